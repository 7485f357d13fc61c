"""Which n-grams a sentence CNN (Kim 2014) used: the max-pooled features behind a logit."""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.data.text import Vocabulary
from cnnlab.models.kim_cnn import KimCNN


@torch.no_grad()
def top_ngrams(
    model: KimCNN,
    ids: torch.Tensor,
    vocab: Vocabulary,
    *,
    target: int | None = None,
    k: int | None = 5,
) -> list[dict[str, Any]]:
    """The ``k`` pooled features that add most to one class's logit, with their n-grams.

    After max-over-time pooling each feature is one window of ``w`` words; its
    contribution to the logit of class ``c`` is ``weight[c, j] * activation_j`` (in eval
    mode, so no dropout), and the contributions of all features plus the bias make the
    logit. Left out: features that did not fire (0 after the ReLU: no n-gram, no
    contribution) and those whose maximum lies on a window of padding only (they say
    nothing about the words).

    Args:
        model: a KimCNN.
        ids: one sentence's token ids, (L,) or (1, L).
        vocab: the vocabulary that encoded ``ids``.
        target: the class to explain; None: the predicted class.
        k: how many features to return, largest contribution first; None: all.

    Returns:
        One dict per feature: ``ngram`` (its words, padding left out), ``tokens`` (the
        window as the filter saw it), ``start`` (position of its first word), ``width``,
        ``filter`` (index among that width's filters), ``feature`` (index in the pooled
        vector), ``activation``, ``contribution`` and ``target``.
    """
    x = _one_sentence(ids)
    was_training = model.training
    model.eval()
    try:
        logits = model(x)[0]
        maps = model.feature_maps(x)  # per width: (1, num_filters, L - w + 1)
    finally:
        model.train(was_training)
    target = int(logits.argmax()) if target is None else target
    weight = model.classifier.weight[target]  # (len(filter_sizes) * num_filters,)
    tokens = vocab.decode(x[0], skip_pad=False)
    pad = vocab.itos[model.padding_idx]
    rows: list[dict[str, Any]] = []
    for group, (width, fmap) in enumerate(zip(model.filter_sizes, maps, strict=True)):
        activation, start = fmap[0].max(dim=1)  # each (num_filters,)
        for j in range(model.num_filters):
            feature = group * model.num_filters + j
            window = _window(tokens, int(start[j]), width, pad)
            if activation[j] <= 0 or all(t == pad for t in window):
                continue
            rows.append(
                {
                    "ngram": " ".join(t for t in window if t != pad),
                    "tokens": window,
                    "start": int(start[j]),
                    "width": width,
                    "filter": j,
                    "feature": feature,
                    "activation": float(activation[j]),
                    "contribution": float(weight[feature] * activation[j]),
                    "target": target,
                }
            )
    rows.sort(key=lambda row: -row["contribution"])
    return rows if k is None else rows[:k]


def _one_sentence(ids: torch.Tensor) -> torch.Tensor:
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ShapeMismatchError(
            f"top_ngrams explains one sentence: expected ids of shape (L,) or (1, L), "
            f"received {tuple(ids.shape)}"
        )
    return ids


def _window(tokens: list[str], start: int, width: int, pad: str) -> list[str]:
    # The model right-pads inputs shorter than its widest filter: those are padding too.
    window = tokens[start : start + width]
    return window + [pad] * (width - len(window))
