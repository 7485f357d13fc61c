"""Per-sample affine matrices and one-call batched resampling, for `cnnlab.data.augment`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def affine_matrices(
    angle: Tensor, translate: Tensor, scale: Tensor, shear: Tensor, size: tuple[int, int]
) -> Tensor:
    """Sampling matrices for `F.affine_grid(..., align_corners=False)`, one per sample.

    The forward map, in pixels about the image centre, is
    ``p_out = R(angle) @ Shear(shear) @ (scale * p_in) + translate``: `angle` > 0 turns the
    content counter-clockwise on screen (as `torch.rot90` does), `translate[:, 0]` > 0 moves
    it right and `translate[:, 1]` > 0 moves it down, `scale` > 1 enlarges it, and `shear`
    slants it along x (``x += tan(shear) * y``). `affine_grid` wants the inverse map (where
    each output pixel reads from) in coordinates normalised to [-1, 1] per axis, which is
    what this returns. Working in pixels first keeps rotations rigid on non-square images.

    Args:
        angle: (B,) rotation in degrees.
        translate: (B, 2) shift (x, y) in pixels.
        scale: (B,) zoom factor.
        shear: (B,) shear angle in degrees.
        size: (H, W) of the images.

    Returns:
        (B, 2, 3) float64 matrices.
    """
    H, W = size
    a = torch.deg2rad(angle.double())
    cos, sin, tan = a.cos(), a.sin(), torch.deg2rad(shear.double()).tan()
    inv = 1.0 / scale.double()
    # inverse of R @ Sh @ Z  =  Z^-1 @ Sh^-1 @ R^-1,  Sh^-1 = [[1, -tan], [0, 1]],  R^-1 = R(-a)
    a00, a01 = (cos - tan * sin) * inv, (-sin - tan * cos) * inv
    a10, a11 = sin * inv, cos * inv
    tx, ty = translate.double().unbind(1)
    bx, by = -(a00 * tx + a01 * ty), -(a10 * tx + a11 * ty)  # p_in = A^-1 @ (p_out - t)
    # pixels about the centre -> normalised: x_norm = x_pix / (W / 2), y_norm = y_pix / (H / 2)
    entries = [a00, a01 * (H / W), bx * (2 / W), a10 * (W / H), a11, by * (2 / H)]
    # stacking along dim 0 is a plain copy; along dim 1 it is ~20x slower for (B,) tensors
    return torch.stack(entries).view(2, 3, -1).permute(2, 0, 1).contiguous()


def affine_grid(theta: Tensor, size: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """`F.affine_grid(theta, (B, C, H, W), align_corners=False)`, built by broadcasting.

    The grid is separable (x_in = t00 * x + t01 * y + t02, likewise y_in), so one broadcast
    add of (B, 2, 1, W) and (B, 2, H, 1) replaces `affine_grid`'s (B, H*W, 3) @ (B, 3, 2)
    batched matmul, which is several times slower for small images on CPU.

    Returns:
        (B, H, W, 2) sampling grid for `F.grid_sample` (a permuted view of a planar tensor;
        `grid_sample` reads it through its strides).
    """
    H, W = size
    theta = theta.to(dtype)
    # pixel centres in normalised coordinates: (2 j + 1) / W - 1 for j = 0 .. W - 1
    xs = torch.linspace(1 / W - 1, 1 - 1 / W, W, dtype=dtype, device=theta.device)
    ys = torch.linspace(1 / H - 1, 1 - 1 / H, H, dtype=dtype, device=theta.device)
    along_x = theta[:, :, 0, None] * xs + theta[:, :, 2, None]  # (B, 2, W)
    along_y = theta[:, :, 1, None] * ys  # (B, 2, H)
    grid = along_x[:, :, None, :] + along_y[:, :, :, None]  # (B, 2, H, W)
    return grid.permute(0, 2, 3, 1)


def apply_affine(x: Tensor, theta: Tensor, fill: float = 0.0, mode: str = "bilinear") -> Tensor:
    """Resamples every image of `x` through its own matrix in one `grid_sample` call.

    Args:
        x: (B, C, H, W) float batch.
        theta: (B, 2, 3) sampling matrices, e.g. from `affine_matrices`.
        fill: Value of pixels that come from outside the image.
        mode: "bilinear", "nearest" or "bicubic".

    Returns:
        The resampled batch, (B, C, H, W).
    """
    grid = affine_grid(theta, (x.shape[2], x.shape[3]), x.dtype)
    # the interpolation weights sum to 1, so shifting by `fill` around a zero-padded sample
    # is exactly "pixels from outside equal fill"
    source = x - fill if fill else x
    out = F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out + fill if fill else out
