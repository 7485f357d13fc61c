"""Small pictures the tasks draw for reports and `predict`: grids with captions, overlays."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

# A fixed palette: class 0 (background) transparent, then distinct colours.
PALETTE = np.array(
    [
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
        [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
        [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200],
    ],
    dtype=np.uint8,
)  # fmt: skip


def grey_rgb(image: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) -> uint8 (H, W, 3) (grey images repeated over the channels)."""
    array = image.detach().cpu().numpy()
    array = array if array.dtype == np.uint8 else np.clip(array * 255, 0, 255).astype(np.uint8)
    return (
        np.repeat(array[0][..., None], 3, axis=2)
        if array.shape[0] == 1
        else array.transpose(1, 2, 0)
    )


def overlay_mask(image: torch.Tensor, mask: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """An image (C, H, W) with its class map (H, W) drawn over it; class 0 left clear."""
    rgb = grey_rgb(image).astype(np.float32)
    ids = mask.detach().cpu().numpy().astype(np.int64)
    colours = PALETTE[ids % len(PALETTE)].astype(np.float32)
    shown = (ids > 0)[..., None]
    out = np.where(shown, (1 - alpha) * rgb + alpha * colours, rgb)
    return out.astype(np.uint8)


def draw_points(
    image: np.ndarray, points: np.ndarray, colour: Sequence[int], radius: int = 1
) -> np.ndarray:
    """Mark (P, 2) pixel points (x, y) as small squares on an RGB image (a copy)."""
    out = image.copy()
    H, W = out.shape[:2]
    for x, y in np.round(points).astype(int):
        out[
            max(0, y - radius) : min(H, y + radius + 1), max(0, x - radius) : min(W, x + radius + 1)
        ] = colour
    return out


def captioned_grid(
    pictures: Sequence[np.ndarray], captions: Sequence[str], ncols: int = 4
) -> np.ndarray:
    """RGB pictures in a grid, each with a caption under it, as one uint8 RGB array."""
    n = len(pictures)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, caption in zip(axes.flat, pictures, captions, strict=False):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(fig)
    return array
