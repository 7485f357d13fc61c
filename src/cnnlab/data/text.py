"""Sentence data for text CNNs: Kim's (2014) tokenizer, a vocabulary, the MR files,
cross-validation folds and pre-trained word vectors in word2vec text or GloVe format."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataFormatError, DatasetUnavailableError

PAD, UNK = "<pad>", "<unk>"
MR_FILES = ("rt-polarity.neg", "rt-polarity.pos")  # label 0, label 1
MR_CLASSES = ("negative", "positive")
MR_ENCODING = "latin-1"  # Pang & Lee's v1.0 files are Latin-1, not UTF-8
EMBEDDING_INIT = 0.25  # Kim: unknown words ~ U(-a, a), a chosen to match word2vec's variance

# Kim's cleaning keeps ASCII letters, digits and ( ) , ! ? ' ` only: accented letters
# become spaces, as in his preprocessing (so "café" -> "caf").
_NOT_KEPT = re.compile(r"[^A-Za-z0-9(),!?'`]")
_CONTRACTION = re.compile(r"('s|'ve|n't|'re|'d|'ll)")
_PUNCTUATION = re.compile(r"([,!()?])")


def tokenize(text: str) -> list[str]:
    """Kim's (2014) sentence cleaning: ``"It's great, isn't it?"`` ->
    ``["it", "'s", "great", ",", "is", "n't", "it", "?"]``.

    Every character but ASCII letters, digits and ``( ) , ! ? ' ``` becomes a space; the
    text is lower-cased; the contractions 's 've n't 're 'd 'll are split off the word
    before them; , ! ( ) ? become tokens of their own; whitespace separates tokens.
    """
    text = _NOT_KEPT.sub(" ", text).lower()
    text = _CONTRACTION.sub(r" \1", text)
    return _PUNCTUATION.sub(r" \1 ", text).split()


class Vocabulary:
    """Token <-> id table: 0 is ``<pad>``, 1 is ``<unk>``, then words by descending count.

    Build it from the training texts only, so that test words count as unknown exactly as
    they would for new sentences.

    Args:
        tokens: every entry in id order, starting with ``<pad>`` and ``<unk>``.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ConfigError(
                f"Expected a vocabulary starting with {[PAD, UNK]}, received {tokens[:2]}"
            )
        self.itos = tokens
        self.stoi = {token: i for i, token in enumerate(tokens)}
        if len(self.stoi) != len(tokens):
            repeated = sorted(t for t, c in Counter(tokens).items() if c > 1)
            raise ConfigError(f"Expected distinct tokens, received repeats of {repeated[:10]}")

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """The vocabulary of ``token_lists`` (training texts, already tokenized).

        Args:
            token_lists: one token list per training sentence.
            min_count: leave out words seen fewer times (they encode as ``<unk>``).
            max_size: the most entries, ``<pad>`` and ``<unk>`` included; the most frequent
                words are kept. None: no limit.

        Ties in count are broken alphabetically, so the same texts give the same ids.
        """
        if min_count < 1:
            raise ConfigError(f"Expected min_count >= 1, received min_count={min_count}")
        if max_size is not None and max_size < 2:
            raise ConfigError(
                f"Expected max_size >= 2 (room for {PAD} and {UNK}), received max_size={max_size}"
            )
        counts = Counter(token for tokens in token_lists for token in tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        words = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        if max_size is not None:
            words = words[: max_size - 2]
        return cls([PAD, UNK, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; words not in the vocabulary become ``<unk>`` (1)."""
        return [self.stoi.get(token, 1) for token in tokens]

    def encode_batch(
        self, texts: Sequence[str | Sequence[str]], max_len: int | None = None
    ) -> torch.Tensor:
        """An int64 tensor (N, max_len) of ids, right-padded with ``<pad>`` (0).

        Args:
            texts: strings (tokenized with :func:`tokenize`) or token lists.
            max_len: the length of every row; a longer text is truncated at the end (its
                first ``max_len`` tokens are kept). None: the longest text's length (at
                least 1).
        """
        token_lists = [tokenize(t) if isinstance(t, str) else t for t in texts]
        if max_len is None:
            max_len = max([1, *(len(t) for t in token_lists)])
        if max_len < 1:
            raise ConfigError(f"Expected max_len >= 1, received max_len={max_len}")
        out = torch.zeros(len(token_lists), max_len, dtype=torch.int64)
        for row, tokens in enumerate(token_lists):
            ids = self.encode(tokens[:max_len])
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_pad: bool = True) -> list[str]:
        """The tokens of ``ids`` (a 1-D sequence), ``<pad>`` left out unless ``skip_pad=False``."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in values if not 0 <= i < len(self.itos)]
        if bad:
            raise ConfigError(
                f"Expected ids in [0, {len(self.itos)}) for this vocabulary, received {bad[:5]}"
            )
        return [self.itos[i] for i in values if not (skip_pad and i == 0)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (for a saved model's record); :meth:`from_dict` reads it back."""
        return {"format": "cnnlab-vocabulary", "tokens": list(self.itos)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Vocabulary:
        """The vocabulary that :meth:`to_dict` wrote."""
        tokens = values.get("tokens") if isinstance(values, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ConfigError(
                f"Expected a mapping with a 'tokens' list of strings, received {values!r:.200}"
            )
        return cls(tokens)


def read_lines(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """The lines of a text file, without their line ends, decoded strictly.

    Only ``\\n`` (and a ``\\r`` before it) ends a line: Latin-1 byte 0x85 is the Unicode
    line break NEL, which ``str.splitlines`` would wrongly split on.

    Raises:
        DataFormatError: bytes that are not valid ``encoding``, with the file, line number,
            the bytes, and an encoding that would read the file.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise _decode_error(path, data, encoding, error) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the file's last line end
    return [line.removesuffix("\r") for line in lines]


def _decode_error(
    path: str | Path, data: bytes, encoding: str, error: UnicodeDecodeError
) -> DataFormatError:
    line = data.count(b"\n", 0, error.start) + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1)
    bad = data[error.start : error.end]
    fits = [e for e in ("utf-8", "cp1252", "latin-1") if e != encoding and _decodes(data, e)]
    return DataFormatError(
        f"{path}, line {line}: bytes {bad!r} at byte {column} of the line are not valid "
        f"{encoding} ({error.reason}); expected {encoding} text. The whole file reads as "
        f"{fits[0]}: pass encoding={fits[0]!r}"
    )


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def read_mr(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """Pang & Lee's sentence polarity data v1.0 (Kim's "MR"): texts and int64 labels.

    Reads ``rt-polarity.neg`` (label 0, "negative") then ``rt-polarity.pos`` (1,
    "positive") from ``folder``, 5,331 Latin-1 lines each in the published files.

    Raises:
        DatasetUnavailableError: a file is missing; the message lists both expected names.
    """
    folder = Path(folder)
    missing = [name for name in MR_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetUnavailableError(
            f"MR data: expected {' and '.join(MR_FILES)} in {folder}, missing {', '.join(missing)}; "
            "they are in rt-polaritydata.tar.gz from Cornell's movie review data page"
        )
    texts: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(MR_FILES):
        lines = read_lines(folder / name, encoding=MR_ENCODING)
        texts += lines
        labels += [label] * len(lines)
    return texts, np.asarray(labels, dtype=np.int64)


def cv_folds(
    n: int, k: int = 10, seed: int = 0, labels: Sequence[int] | np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index splits; every index is in exactly one test fold.

    The indices are shuffled with ``seed``; with ``labels`` each class is shuffled on its
    own and the classes are dealt out in turn, so every fold holds each class within one
    sample of its share (stratified). Fold sizes differ by at most one.

    Returns:
        ``k`` pairs of sorted int64 arrays (train indices, test indices).
    """
    if not 2 <= k <= n:
        raise ConfigError(f"Expected 2 <= k <= n={n}, received k={k}")
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
    else:
        y = np.asarray(labels)
        if y.shape != (n,):
            raise ConfigError(f"Expected labels of shape ({n},), received shape {y.shape}")
        order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k
    everything = np.arange(n, dtype=np.int64)
    return [(everything[fold_of != f], everything[fold_of == f]) for f in range(k)]


def read_embeddings(
    path: str | Path,
    vocab: Vocabulary,
    *,
    dim: int | None = None,
    generator: torch.Generator | None = None,
    encoding: str = "utf-8",
) -> tuple[torch.Tensor, int]:
    """An embedding matrix for ``vocab`` from pre-trained word vectors in a text file.

    The file is word2vec's text format (a first line "count dim") or GloVe's (no header);
    the first line tells which. Each line is a word and its values, separated by spaces;
    the first line of a word wins. Every line's length is checked; only the values of
    vocabulary words are parsed. Vocabulary words not in the file get values drawn from
    U(-0.25, 0.25), Kim's choice; the ``<pad>`` row is zero.

    Args:
        path: the vectors file.
        vocab: the vocabulary whose rows to fill.
        dim: the expected vector length; None: whatever the file has.
        generator: random numbers for the missing words (reproducible init).
        encoding: the file's text encoding.

    Returns:
        The (len(vocab), dim) float32 matrix and how many vocabulary words the file had.

    Raises:
        DataFormatError: a line with the wrong number of values or a value that is not a
            number, a header that disagrees with the file, or an empty file.
    """
    found: dict[int, np.ndarray] = {}
    file_dim, header_count, vectors = None, None, 0
    with Path(path).open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            parts = _split_line(path, line_no, raw, encoding)
            if not parts:
                continue
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                header_count, file_dim = int(parts[0]), int(parts[1])  # word2vec's header
                _check_dim(path, line_no, dim, file_dim)
                continue
            if file_dim is None:  # GloVe: the first vector sets the length
                file_dim = len(parts) - 1
                _check_dim(path, line_no, dim, file_dim)
            if len(parts) - 1 != file_dim:
                raise DataFormatError(
                    f"{path}, line {line_no}: expected a word and {file_dim} values, "
                    f"received {len(parts) - 1} values"
                )
            vectors += 1
            index = vocab.stoi.get(parts[0])
            if index is not None and index not in found:
                found[index] = _parse_values(path, line_no, parts[1:])
    if file_dim is None or vectors == 0:
        raise DataFormatError(f"{path}: expected word vectors, received a file without any")
    if header_count is not None and header_count != vectors:
        raise DataFormatError(
            f"{path}: header says {header_count} vectors, received {vectors} vector lines"
        )
    matrix = (torch.rand(len(vocab), file_dim, generator=generator) * 2 - 1) * EMBEDDING_INIT
    for index, values in found.items():
        matrix[index] = torch.from_numpy(values)
    matrix[vocab.pad_id] = 0.0
    return matrix, len(found)


def _split_line(path: str | Path, line_no: int, raw: bytes, encoding: str) -> list[str]:
    try:
        return raw.decode(encoding).split()
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"{path}, line {line_no}: bytes {raw[error.start : error.end]!r} are not valid "
            f"{encoding}; expected {encoding} text (pass the file's encoding=)"
        ) from None


def _check_dim(path: str | Path, line_no: int, expected: int | None, received: int) -> None:
    if received < 1 or (expected is not None and received != expected):
        wanted = f"{expected}-dimensional vectors" if expected else "a word and its values"
        raise DataFormatError(
            f"{path}, line {line_no}: expected {wanted}, received {received} values per word"
        )


def _parse_values(path: str | Path, line_no: int, values: list[str]) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float32)
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise DataFormatError(
            f"{path}, line {line_no}: expected numbers after the word, received {bad!r}"
        ) from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
