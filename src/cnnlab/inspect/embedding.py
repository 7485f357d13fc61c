"""Penultimate-layer embeddings of a CNN, projected to 2-D (PCA or t-SNE) and drawn."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.visualize import save_png
from cnnlab.models.ensemble import Ensemble

Method = Literal["pca", "tsne"]

# Tableau-10 colours: distinct enough to tell classes apart; class i gets PALETTE[i % 10].
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


@torch.no_grad()
def penultimate_features(
    model: nn.Module, images_float: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Global-average-pooled output of ``model.forward_features``: one vector per image.

    Args:
        model: a zoo model (it must have ``forward_features``).
        images_float: preprocessed float images (N, C, H, W).
        batch_size: images per forward pass.

    Returns:
        (N, D) features, D = channels of the last feature maps. The model runs in
        eval mode; its training flag is restored afterwards.
    """
    # Typed by hand: nn.Module's __getattr__ would make mypy see Tensor | Module.
    forward: Callable[[torch.Tensor], torch.Tensor] | None = getattr(
        model, "forward_features", None
    )
    if forward is None:
        hint = (
            "; an ensemble's members are models of their own (RUN/member-0, ...)"
            if isinstance(model, Ensemble)
            else ""
        )
        raise ConfigError(f"{type(model).__name__} has no forward_features (not a zoo model){hint}")
    was_training = model.training
    model.eval()
    try:
        outs = []
        for i in range(0, len(images_float), batch_size):
            maps = forward(images_float[i : i + batch_size])
            # (B, D, H, W) -> (B, D); maps that are already flat stay as they are.
            outs.append(maps.mean(dim=(2, 3)) if maps.dim() == 4 else maps.flatten(1))
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, 0)


def project(
    features: torch.Tensor | np.ndarray, method: Method = "pca", seed: int = 0
) -> np.ndarray:
    """Map (N, D) features to (N, 2) points.

    Args:
        features: one row per sample.
        method: "pca" (first two principal components) or "tsne" (scikit-learn
            t-SNE, PCA-initialised; perplexity is capped below N as it requires).
        seed: random state of t-SNE.
    """
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.dim() != 2 or len(x) < 3:
        raise ShapeMismatchError(f"Expected features (N >= 3, D), received {tuple(x.shape)}")
    if method == "pca":
        centred = x - x.mean(dim=0)
        # Full SVD: exact, and cheap for the few thousand samples one plots.
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        points = centred @ vh[:2].T
        if points.shape[1] < 2:  # D == 1: pad with zeros
            points = torch.cat([points, torch.zeros(len(x), 1, dtype=x.dtype)], dim=1)
        return points.numpy()
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(x) - 1) / 3)
        tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity)
        return np.asarray(tsne.fit_transform(x.numpy()), dtype=np.float64)
    raise ConfigError(f"Expected method in 'pca', 'tsne', received {method!r}")


def scatter_png(
    points: np.ndarray,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    size: int = 512,
) -> Path:
    """Draw 2-D points coloured by class, with a legend in the top-left corner, as a PNG.

    Args:
        points: (N, 2) coordinates, e.g. from :func:`project`.
        labels: class index of each point.
        classes: class names for the legend.
        path: destination PNG.
        size: side of the square picture in pixels.

    Returns:
        The path written.
    """
    pts = np.asarray(points, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) != len(lab):
        raise ShapeMismatchError(
            f"Expected points (N, 2) and N labels, received {pts.shape} and {len(lab)} labels"
        )
    pad = 12  # pixels between the outermost points and the border
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    xy = pad + (pts - lo) / np.maximum(hi - lo, 1e-12) * (size - 2 * pad)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for (x, y), c in zip(xy, lab, strict=True):
        y = size - y  # image rows grow downwards; keep "up" as larger values
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=PALETTE[c % len(PALETTE)])
    for i, name in enumerate(classes):
        top = 4 + 12 * i
        draw.rectangle([4, top, 12, top + 8], fill=PALETTE[i % len(PALETTE)])
        draw.text((16, top - 1), name, fill="black")
    return save_png(np.asarray(img), path)
