"""Sentence data: Kim's tokenizer, the vocabulary, MR, CV folds and word-vector files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.core.errors import ConfigError, DataFormatError, DatasetUnavailableError
from cnnlab.data.text import (
    MR_FILES,
    Vocabulary,
    cv_folds,
    read_embeddings,
    read_lines,
    read_mr,
    tokenize,
)

MR_FOLDER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mr"
needs_mr = pytest.mark.skipif(not MR_FOLDER.is_dir(), reason=f"no MR copy in {MR_FOLDER}")


# -- tokenize -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("It's great, isn't it?", ["it", "'s", "great", ",", "is", "n't", "it", "?"]),
        ("We've (finally) won!", ["we", "'ve", "(", "finally", ")", "won", "!"]),
        ("they're sure you'd say we'll", ["they", "'re", "sure", "you", "'d", "say", "we", "'ll"]),
        ('a "so-so" film ; 2/10 .', ["a", "so", "so", "film", "2", "10"]),
        ("café  `cult`\tclassic\n", ["caf", "`cult`", "classic"]),  # ASCII letters only
        ("", []),
    ],
)
def test_tokenize_follows_kims_cleaning(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


# -- Vocabulary -----------------------------------------------------------------------


def test_vocabulary_order_counts_then_alphabet() -> None:
    vocab = Vocabulary.build([["b", "a", "c", "b"], ["c", "d", "b"]])
    # b: 3, c: 2, a and d: 1 each -> alphabetical between them
    assert vocab.itos == ["<pad>", "<unk>", "b", "c", "a", "d"]
    assert len(vocab) == 6 and "a" in vocab and "z" not in vocab
    assert vocab.encode(["a", "z", "b"]) == [4, 1, 2]


def test_vocabulary_min_count_and_max_size() -> None:
    lists = [["b", "a", "c", "b"], ["c", "d", "b"]]
    assert Vocabulary.build(lists, min_count=2).itos == ["<pad>", "<unk>", "b", "c"]
    assert Vocabulary.build(lists, max_size=3).itos == ["<pad>", "<unk>", "b"]
    with pytest.raises(ConfigError, match="max_size=1"):
        Vocabulary.build(lists, max_size=1)
    with pytest.raises(ConfigError, match="min_count=0"):
        Vocabulary.build(lists, min_count=0)


def test_encode_batch_pads_right_and_truncates_the_end() -> None:
    vocab = Vocabulary.build([["good", "film", "bad"]])
    x = vocab.encode_batch(["Good film!", ["bad", "bad", "good", "film"]], max_len=3)
    assert x.dtype == torch.int64 and x.shape == (2, 3)
    good, film, bad = vocab.encode(["good", "film", "bad"])
    # "!" is a token of its own, unknown here; the second text loses its last word.
    assert x.tolist() == [[good, film, 1], [bad, bad, good]]
    assert vocab.encode_batch(["good", "bad film"]).tolist() == [[good, 0], [bad, film]]
    with pytest.raises(ConfigError, match="max_len=0"):
        vocab.encode_batch(["good"], max_len=0)


def test_decode_round_trip_and_json_record() -> None:
    vocab = Vocabulary.build([tokenize("a fine , fine day")])
    ids = vocab.encode_batch(["a fine day"], max_len=5)[0]
    assert vocab.decode(ids) == ["a", "fine", "day"]
    assert vocab.decode(ids, skip_pad=False)[-1] == "<pad>"
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.itos == vocab.itos and again.encode(["day"]) == vocab.encode(["day"])
    with pytest.raises(ConfigError, match=r"\[0, 6\).*\[9\]"):
        vocab.decode([2, 9])
    with pytest.raises(ConfigError, match="<pad>"):
        Vocabulary.from_dict({"tokens": ["a", "b"]})
    with pytest.raises(ConfigError, match="tokens"):
        Vocabulary.from_dict({"words": []})


# -- read_lines, read_mr ----------------------------------------------------------------


def test_read_lines_keeps_nel_and_strips_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"first\r\nsec\x85ond\nthird\n")  # 0x85: NEL in Latin-1
    assert read_lines(path, encoding="latin-1") == ["first", "sec\x85ond", "third"]


def test_read_lines_decode_error_names_file_line_bytes_and_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "reviews.txt"
    path.write_bytes("ok\nalso ok\nna\xefve\n".encode("latin-1"))
    with pytest.raises(DataFormatError) as info:
        read_lines(path)
    message = str(info.value)
    for part in ("reviews.txt", "line 3", r"b'\xef", "utf-8", "encoding='cp1252'"):
        assert part in message
    assert read_lines(path, encoding="latin-1")[2] == "naïve"


def test_read_mr_missing_files_lists_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "rt-polarity.pos").write_text("good\n")
    with pytest.raises(DatasetUnavailableError) as info:
        read_mr(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and all(name in message for name in MR_FILES)
    assert "missing rt-polarity.neg" in message


def test_read_mr_labels_neg_then_pos(tmp_path: Path) -> None:
    (tmp_path / "rt-polarity.neg").write_bytes(b"dull\nflat \xe9clair\n")
    (tmp_path / "rt-polarity.pos").write_bytes(b"fun\n")
    texts, labels = read_mr(tmp_path)
    assert texts == ["dull", "flat éclair", "fun"]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 1]


@needs_mr
def test_real_mr_matches_kims_table_1() -> None:
    # Kim (2014) Table 1, MR: N = 10662 sentences, |V| = 18765 words, average length 20;
    # his code pads to the longest sentence, 56 tokens (the registry's input_shape).
    texts, labels = read_mr(MR_FOLDER)
    assert len(texts) == 10662 and int(labels.sum()) == 5331
    tokens = [tokenize(t) for t in texts]
    assert len(Vocabulary.build(tokens)) - 2 == 18765
    lengths = [len(t) for t in tokens]
    assert round(sum(lengths) / len(lengths)) == 20 and max(lengths) == 56


# -- cv_folds ---------------------------------------------------------------------------


@pytest.mark.parametrize("stratified", [False, True])
def test_cv_folds_partition_every_index_once(stratified: bool) -> None:
    n, k = 103, 10
    labels = np.arange(n) % 3 if stratified else None
    folds = cv_folds(n, k=k, seed=4, labels=labels)
    assert len(folds) == k
    tests = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tests), np.arange(n))  # each index in exactly one test fold
    for train, test in folds:
        assert np.array_equal(np.union1d(train, test), np.arange(n))
        assert np.intersect1d(train, test).size == 0
        assert len(test) in (n // k, n // k + 1)


def test_cv_folds_stratify_and_are_deterministic() -> None:
    labels = np.array([0] * 70 + [1] * 30)
    folds = cv_folds(100, k=10, seed=0, labels=labels)
    for _, test in folds:
        assert np.bincount(labels[test], minlength=2).tolist() == [7, 3]
    again = cv_folds(100, k=10, seed=0, labels=labels)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = cv_folds(100, k=10, seed=1, labels=labels)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))
    with pytest.raises(ConfigError, match="k=1"):
        cv_folds(100, k=1)
    with pytest.raises(ConfigError, match=r"shape \(99,\)"):
        cv_folds(100, labels=labels[:99])


# -- read_embeddings ----------------------------------------------------------------------


VECTORS = {"good": [0.5, -1.0, 2.0], "bad": [1.5, 0.0, -0.5], "other": [9.0, 9.0, 9.0]}


def _write_vectors(path: Path, header: bool) -> Path:
    lines = [f"{w} {' '.join(map(str, v))}" for w, v in VECTORS.items()]
    if header:
        lines.insert(0, f"{len(VECTORS)} 3")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", [True, False], ids=["word2vec", "glove"])
def test_read_embeddings_both_formats(tmp_path: Path, header: bool) -> None:
    vocab = Vocabulary.build([["good", "bad", "unseen"]])
    path = _write_vectors(tmp_path / "v.txt", header)
    matrix, found = read_embeddings(path, vocab, generator=torch.Generator().manual_seed(0))
    assert matrix.shape == (len(vocab), 3) and matrix.dtype == torch.float32
    assert found == 2
    for word in ("good", "bad"):
        assert matrix[vocab.stoi[word]].tolist() == VECTORS[word]
    assert not matrix[0].any()  # <pad>
    random_rows = matrix[[vocab.stoi["<unk>"], vocab.stoi["unseen"]]]
    assert random_rows.abs().max() <= 0.25 and random_rows.abs().min() > 0
    again, _ = read_embeddings(path, vocab, generator=torch.Generator().manual_seed(0))
    assert torch.equal(matrix, again)


def test_read_embeddings_uniform_init_statistics(tmp_path: Path) -> None:
    vocab = Vocabulary.build([[f"w{i}" for i in range(2000)]])
    path = _write_vectors(tmp_path / "v.txt", header=False)
    matrix, found = read_embeddings(path, vocab, generator=torch.Generator().manual_seed(0))
    assert found == 0
    rest = matrix[1:]
    # U(-a, a) has mean 0 and variance a^2 / 3.
    assert abs(rest.mean().item()) < 0.005
    assert rest.var().item() == pytest.approx(0.25**2 / 3, rel=0.02)


def test_read_embeddings_errors_name_file_and_line(tmp_path: Path) -> None:
    vocab = Vocabulary.build([["good"]])
    broken = tmp_path / "broken.txt"
    broken.write_text("good 1 2 3\nbad 1 2\n")
    with pytest.raises(
        DataFormatError, match=r"broken\.txt, line 2: expected a word and 3 values, received 2"
    ):
        read_embeddings(broken, vocab)
    not_number = tmp_path / "nan.txt"
    not_number.write_text("2 2\nbad 1 2\ngood 1 x\n")
    with pytest.raises(DataFormatError, match=r"nan\.txt, line 3: .*'x'"):
        read_embeddings(not_number, vocab)
    short = tmp_path / "short.txt"
    short.write_text("5 2\ngood 1 2\n")
    with pytest.raises(DataFormatError, match="header says 5 vectors, received 1"):
        read_embeddings(short, vocab)
    with pytest.raises(DataFormatError, match="line 1: expected 300-dimensional"):
        read_embeddings(_write_vectors(tmp_path / "v.txt", header=True), vocab, dim=300)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(DataFormatError, match=r"empty\.txt"):
        read_embeddings(empty, vocab)
