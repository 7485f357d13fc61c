"""top_ngrams: a hand-built filter must point at its bigram; contributions add up to the logit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.data.text import Vocabulary
from cnnlab.inspect.ngrams import top_ngrams
from cnnlab.models.kim_cnn import KimCNN

WORDS = ["the", "film", "is", "not", "good", "at", "all"]


def hand_built() -> tuple[KimCNN, Vocabulary]:
    """One-hot word vectors; width-2 filter 0 fires (1.0) on "not good" only, width-2
    filter 1 only on windows of padding, width-3 filter 0 on "not good" + anything."""
    vocab = Vocabulary(["<pad>", "<unk>", *WORDS])
    v = len(vocab)
    model = KimCNN(vocab_size=v, embed_dim=v, filter_sizes=(2, 3), num_filters=2, max_norm=None)
    not_, good = vocab.stoi["not"], vocab.stoi["good"]
    with torch.no_grad():
        model.load_embeddings(torch.eye(v))  # <pad> row becomes 0
        for p in model.parameters():
            if p is not model.features.embedding.weight:
                p.zero_()
        pairs, trigram = (c for c in model.features.convs if isinstance(c, nn.Conv1d))
        pairs.weight[0, not_, 0] = pairs.weight[0, good, 1] = 1.0
        assert pairs.bias is not None
        pairs.bias[0] = -1.0
        pairs.weight[1, 1:, :] = -1.0  # filter 1: any real word pushes it below 0
        pairs.bias[1] = 0.5
        trigram.weight[0, not_, 0] = trigram.weight[0, good, 1] = 0.5
        # Class 0 ("negative") reads the bigram and trigram features.
        model.classifier.weight[0, 0] = 2.0
        model.classifier.weight[0, 2] = 1.0
        model.classifier.weight[1, 1] = 3.0  # the padding feature: must not be reported
    return model, vocab


def test_the_top_ngram_is_the_bigram_the_filter_detects() -> None:
    model, vocab = hand_built()
    ids = torch.tensor([*vocab.encode(WORDS), 0, 0, 0])
    rows = top_ngrams(model, ids, vocab, k=5)
    top = rows[0]
    assert top["ngram"] == "not good" and top["tokens"] == ["not", "good"]
    assert (top["start"], top["width"], top["filter"], top["feature"]) == (3, 2, 0, 0)
    assert top["activation"] == pytest.approx(1.0) and top["contribution"] == pytest.approx(2.0)
    assert top["target"] == 0  # predicted: negative
    # Second: the trigram filter, starting on "not"; the padding-only feature is left out.
    assert [(r["feature"], r["start"], r["ngram"]) for r in rows] == [
        (0, 3, "not good"),
        (2, 3, "not good at"),
    ]


def test_windows_past_a_short_input_count_as_padding() -> None:
    model, vocab = hand_built()
    ids = torch.tensor(vocab.encode(["not", "good"]))  # shorter than the width-3 filter
    rows = top_ngrams(model, ids.unsqueeze(0), vocab, target=0, k=None)
    trigram = next(r for r in rows if r["width"] == 3)
    assert trigram["tokens"] == ["not", "good", "<pad>"] and trigram["ngram"] == "not good"


def test_contributions_and_bias_sum_to_the_logit() -> None:
    torch.manual_seed(0)
    vocab = Vocabulary(["<pad>", "<unk>", *[f"w{i}" for i in range(40)]])
    model = KimCNN(vocab_size=len(vocab), embed_dim=8, num_filters=6)
    with torch.no_grad():
        model.classifier.bias.fill_(0.3)
    ids = torch.randint(2, len(vocab), (15,))  # no padding: every feature has an n-gram
    logits = model.eval()(ids.unsqueeze(0))[0]
    model.train()
    for target in (0, 1):
        rows = top_ngrams(model, ids, vocab, target=target, k=None)
        total = sum(r["contribution"] for r in rows) + model.classifier.bias[target].item()
        assert total == pytest.approx(logits[target].item(), abs=1e-5)
        assert all(r["target"] == target for r in rows)
        words = vocab.decode(ids)
        for r in rows:  # each n-gram is the window its start and width name
            assert r["ngram"].split() == words[r["start"] : r["start"] + r["width"]]
    assert model.training  # the caller's mode is restored
    assert len(top_ngrams(model, ids, vocab)) == 5


def test_one_sentence_only() -> None:
    model, vocab = hand_built()
    with pytest.raises(ShapeMismatchError, match=r"\(L,\) or \(1, L\).*\(2, 4\)"):
        top_ngrams(model, torch.zeros(2, 4, dtype=torch.int64), vocab)
