"""Evaluation views of a classifier: confusion matrix, per-class report, worst mistakes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.visualize import image_grid, save_png

NormaliseBy = Literal["true", "pred", "all"]

NAME_CHARS = 8  # class names are cut to this many characters in pictures, so cells stay square


def confusion_matrix(
    y_true: torch.Tensor | Sequence[int], y_pred: torch.Tensor | Sequence[int], num_classes: int
) -> torch.Tensor:
    """Counts (K, K) of int64: row = true class, column = predicted class.

    Args:
        y_true: true class indices, shape (N,).
        y_pred: predicted class indices, shape (N,).
        num_classes: K; every label must lie in 0..K-1.
    """
    t = torch.as_tensor(y_true, dtype=torch.int64).reshape(-1)
    p = torch.as_tensor(y_pred, dtype=torch.int64).reshape(-1)
    if t.shape != p.shape:
        raise ShapeMismatchError(
            f"Expected y_true and y_pred of equal length, received {len(t)} and {len(p)}"
        )
    for name, y in (("y_true", t), ("y_pred", p)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ConfigError(
                f"Expected {name} in 0..{num_classes - 1}, received values "
                f"{int(y.min())}..{int(y.max())}"
            )
    # One bincount over the flat index true * K + pred fills the whole matrix.
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def normalise(cm: torch.Tensor, by: NormaliseBy = "true") -> torch.Tensor:
    """Rates (K, K) of float64 from counts.

    Args:
        cm: a confusion matrix from :func:`confusion_matrix`.
        by: "true" makes each row sum to 1 (recall on the diagonal), "pred" each
            column (precision on the diagonal), "all" the whole matrix. An empty
            row or column stays 0 rather than NaN.
    """
    c = cm.to(torch.float64)
    if by == "true":
        total = c.sum(dim=1, keepdim=True)
    elif by == "pred":
        total = c.sum(dim=0, keepdim=True)
    elif by == "all":
        total = c.sum()
    else:
        raise ConfigError(f"Expected by in 'true', 'pred', 'all', received {by!r}")
    return c / total.clamp_min(1)


def per_class_report(cm: torch.Tensor, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support for each class.

    A class that is never predicted (or never present) would divide by zero; its
    precision (or recall, F1) is reported as 0.0, as scikit-learn's
    ``zero_division=0`` does.

    Returns:
        One dict per class with keys class, precision, recall, f1, support.
    """
    _check_classes(cm, classes)
    c = cm.to(torch.float64)
    tp = c.diagonal()
    precision = tp / c.sum(dim=0).clamp_min(1)
    recall = tp / c.sum(dim=1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-300)
    support = cm.sum(dim=1)
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]


def most_confused(
    cm: torch.Tensor, classes: Sequence[str], k: int = 5
) -> list[tuple[str, str, int]]:
    """The k largest off-diagonal cells as (true class, predicted class, count).

    Pairs with a count of 0 are left out; ties keep row-major order.
    """
    _check_classes(cm, classes)
    off = cm.clone()
    off.fill_diagonal_(0)
    flat = off.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)[:k]
    n = len(classes)
    return [(classes[i // n], classes[i % n], int(flat[i])) for i in order.tolist() if flat[i] > 0]


def worst_mistakes(
    probs: torch.Tensor, y_true: torch.Tensor | Sequence[int], k: int = 16
) -> list[dict[str, Any]]:
    """The k wrong predictions made with the highest confidence.

    Args:
        probs: class probabilities (N, K).
        y_true: true class indices (N,).
        k: how many to return.

    Returns:
        Dicts with index (row of probs), true, pred (class indices), confidence
        (probability of the wrong guess) and top3 (list of (class index, prob)),
        sorted by confidence, largest first.
    """
    t = torch.as_tensor(y_true, dtype=torch.int64).reshape(-1)
    if probs.dim() != 2 or len(probs) != len(t):
        raise ShapeMismatchError(
            f"Expected probs (N, K) with N = len(y_true) = {len(t)}, received {tuple(probs.shape)}"
        )
    confidence, pred = probs.max(dim=1)
    wrong = (pred != t).nonzero().reshape(-1)
    order = torch.argsort(confidence[wrong], descending=True, stable=True)[:k]
    top_p, top_i = probs.topk(min(3, probs.shape[1]), dim=1)
    return [
        {
            "index": i,
            "true": int(t[i]),
            "pred": int(pred[i]),
            "confidence": float(confidence[i]),
            "top3": list(zip(top_i[i].tolist(), top_p[i].tolist(), strict=True)),
        }
        for i in wrong[order].tolist()
    ]


def topk_table(
    probs_row: torch.Tensor, classes: Sequence[str], k: int = 3
) -> list[tuple[str, float]]:
    """The k most probable classes of one prediction as (class name, probability)."""
    if probs_row.dim() != 1 or len(probs_row) != len(classes):
        raise ShapeMismatchError(
            f"Expected probs_row ({len(classes)},), received {tuple(probs_row.shape)}"
        )
    values, indices = probs_row.topk(min(k, len(classes)))
    return [(classes[i], float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


def format_topk_table(
    probs_row: torch.Tensor, classes: Sequence[str], true_label: int, k: int = 3
) -> str:
    """Seed 001's panel caption: the true label, then the top-k guesses with probabilities."""
    top = topk_table(probs_row, classes, k)
    width = max(len(name) for name, _ in top)
    lines = [f"true: {classes[true_label]}"]
    lines.extend(f"  {name:<{width}}  {p:.2f}" for name, p in top)
    return "\n".join(lines)


def format_report(cm: torch.Tensor, classes: Sequence[str]) -> str:
    """:func:`per_class_report` as a text table, with overall accuracy at the end."""
    rows = per_class_report(cm, classes)
    width = max([len("class"), *(len(name) for name in classes)])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for r in rows:
        lines.append(
            f"{r['class']:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  "
            f"{r['f1']:5.3f}  {r['support']:7d}"
        )
    total = int(cm.sum())
    accuracy = int(cm.diagonal().sum()) / max(total, 1)
    lines.append(f"accuracy {accuracy:.3f} on {total} samples")
    return "\n".join(lines)


def confusion_png(
    cm: torch.Tensor,
    classes: Sequence[str] | None,
    path: str | os.PathLike[str],
    normalised: bool = True,
    cell: int = 32,
) -> Path:
    """Draw the confusion matrix as a heat map (white = 0, dark blue = most) and save a PNG.

    Args:
        cm: counts (K, K).
        classes: names written along the left and top edge (cut to NAME_CHARS
            characters); None draws the bare grid.
        path: destination PNG.
        normalised: colour and label cells by row rates instead of raw counts.
        cell: side of one cell in pixels.

    Returns:
        The path written. The picture is (margin + K * cell) pixels square, where
        margin is 0 without class names and 6 * NAME_CHARS + 8 with them.
    """
    k = cm.shape[0]
    if classes is not None:
        _check_classes(cm, classes)
    values = normalise(cm, "true") if normalised else cm.to(torch.float64)
    scale = values / values.max().clamp_min(1e-12)  # 0..1 for the colour scale
    margin = 0 if classes is None else 6 * NAME_CHARS + 8
    side = margin + k * cell
    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    for r in range(k):
        for c in range(k):
            x0, y0 = margin + c * cell, margin + r * cell
            v = float(scale[r, c])
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=_blue(v), outline="grey")
            text = f"{float(values[r, c]):.2f}" if normalised else str(int(cm[r, c]))
            if cell >= 28:
                draw.text((x0 + 2, y0 + cell // 3), text, fill="white" if v > 0.5 else "black")
    for i, name in enumerate(classes or []):
        short = name[:NAME_CHARS]
        draw.text((2, margin + i * cell + cell // 3), short, fill="black")
        draw.text((margin + i * cell + 2, 2 + (i % 2) * 12), short, fill="black")
    return save_png(np.asarray(img), path)


def _blue(v: float) -> tuple[int, int, int]:
    """Colour for v in [0, 1]: white at 0, dark blue at 1."""
    return (round(255 - 247 * v), round(255 - 207 * v), round(255 - 148 * v))


def mistakes_grid(
    images: torch.Tensor, mistakes: Sequence[dict[str, Any]], path: str | os.PathLike[str]
) -> Path:
    """Save the images of :func:`worst_mistakes` as one PNG grid, worst first.

    Args:
        images: the evaluated images (N, C, H, W), uint8 or float.
        mistakes: entries with an "index" into images.
        path: destination PNG.
    """
    if not mistakes:
        raise ConfigError("Expected at least one mistake, received none")
    picked = images[[m["index"] for m in mistakes]]
    if picked.dtype == torch.uint8:
        grid = image_grid(picked.float() / 255, normalize=None)
    else:
        grid = image_grid(picked, normalize="each")
    return save_png(grid, path, scale=2)


def _check_classes(cm: torch.Tensor, classes: Sequence[str]) -> None:
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise ShapeMismatchError(
            f"Expected cm ({len(classes)}, {len(classes)}) for {len(classes)} classes, "
            f"received {tuple(cm.shape)}"
        )
