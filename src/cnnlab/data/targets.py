"""Targets that move with the pixels: masks, keypoints and boxes under flips, crops, affines.

Conventions (the ones `cnnlab.data.augment` uses for pixels):
- masks (B, H, W) are integer class maps; resampled by nearest neighbour, and pixels that
  come from outside the image become ``fill`` (background, 0).
- keypoints (B, P, 2) are (x, y) in pixels with pixel centres at integers (the first
  pixel's centre is 0); ``visible`` (B, P) bool marks known points. A point moved out of
  the image becomes not visible. A horizontal flip maps x to W - 1 - x; any mirror (a
  horizontal or a vertical flip, not both: that is a half turn) reorders the points by
  ``flip_index`` (left eye <-> right eye), as mmpose does.
- boxes (B, M, 4) are (x0, y0, x1, y1) in pixels with edges at half-integers' outer
  bounds (x1 exclusive: a box over columns 2..4 is x0=2, x1=5); ``classes`` (B, M) is -1
  for padding rows. Transformed through their four corners, then the enclosing box is
  clipped to the image; boxes left empty get class -1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.core.errors import ShapeMismatchError

Targets = dict[str, Tensor]


def flip_targets(
    targets: Targets, horizontal: Tensor, vertical: Tensor | None, size: tuple[int, int],
    flip_index: Sequence[int] | None = None,
) -> Targets:  # fmt: skip
    """Mirror the targets of the samples where ``horizontal`` / ``vertical`` (B,) are True."""
    H, W = size
    out = dict(targets)
    h = horizontal.bool()
    v = vertical.bool() if vertical is not None else torch.zeros_like(h)
    if "mask" in out:
        mask = out["mask"]
        mask = torch.where(h[:, None, None], mask.flip(2), mask)
        out["mask"] = torch.where(v[:, None, None], mask.flip(1), mask)
    if "keypoints" in out:
        kp = out["keypoints"].clone()
        kp[..., 0] = torch.where(h[:, None], (W - 1) - kp[..., 0], kp[..., 0])
        kp[..., 1] = torch.where(v[:, None], (H - 1) - kp[..., 1], kp[..., 1])
        visible = out.get("visible")
        if flip_index is not None:
            order = torch.as_tensor(list(flip_index), dtype=torch.int64)
            if len(order) != kp.shape[1]:
                raise ShapeMismatchError(
                    f"flip_index has {len(order)} entries but the keypoints are "
                    f"{tuple(kp.shape)}: expected one entry per point"
                )
            # Any mirror swaps left and right; both flips at once are a half turn, no swap.
            mirrored = h ^ v
            kp = torch.where(mirrored[:, None, None], kp[:, order], kp)
            if visible is not None:
                visible = torch.where(mirrored[:, None], visible[:, order], visible)
        out["keypoints"] = kp
        if visible is not None:
            out["visible"] = visible
    if "boxes" in out:
        b = out["boxes"]
        x0, y0, x1, y1 = b.unbind(-1)
        hx = h[:, None]
        vy = v[:, None]
        nx0, nx1 = torch.where(hx, W - x1, x0), torch.where(hx, W - x0, x1)
        ny0, ny1 = torch.where(vy, H - y1, y0), torch.where(vy, H - y0, y1)
        out["boxes"] = torch.stack([nx0, ny0, nx1, ny1], dim=-1)
    return out


def shift_targets(
    targets: Targets, dx: Tensor, dy: Tensor, size: tuple[int, int], padding_mode: str = "constant"
) -> Targets:
    """Move the targets by whole pixels (B,) each, as a padded random crop moves pixels.

    Mask pixels from the padding are background (0) for constant padding, and the same
    reflected or replicated mask pixels as the image shows for the other modes.
    """
    H, W = size
    out = dict(targets)
    if "mask" in out:
        mask = out["mask"]
        p = int(max(dx.abs().max(), dy.abs().max())) if len(dx) else 0
        if padding_mode == "constant" or p == 0:
            padded = F.pad(mask, (p, p, p, p), value=0)
        else:  # F.pad reflects and replicates float maps with a channel dimension
            wide = F.pad(mask[:, None].to(torch.float32), (p, p, p, p), mode=padding_mode)
            padded = wide[:, 0].round().to(mask.dtype)
        rows = (torch.arange(H)[None, :] + p - dy[:, None]).clamp(0, H + 2 * p - 1)  # (B, H)
        cols = (torch.arange(W)[None, :] + p - dx[:, None]).clamp(0, W + 2 * p - 1)  # (B, W)
        batch = torch.arange(len(mask))[:, None, None]
        out["mask"] = padded[batch, rows[:, :, None], cols[:, None, :]]
    if "keypoints" in out:
        shift = torch.stack([dx, dy], dim=-1).to(out["keypoints"].dtype)[:, None, :]
        out["keypoints"] = out["keypoints"] + shift
        out = _hide_outside(out, size)
    if "boxes" in out:
        shift = torch.stack([dx, dy, dx, dy], dim=-1).to(out["boxes"].dtype)[:, None, :]
        out = _clip_boxes({**out, "boxes": out["boxes"] + shift}, size)
    return out


def affine_targets(targets: Targets, theta: Tensor, size: tuple[int, int]) -> Targets:
    """Move the targets through the sampling matrices ``theta`` (B, 2, 3) of apply_affine."""
    out = dict(targets)
    if "mask" in out:
        from cnnlab.data.affine import affine_grid

        grid = affine_grid(theta, size, torch.float32)
        mask = out["mask"][:, None].to(torch.float32)
        sampled = F.grid_sample(
            mask, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        out["mask"] = sampled[:, 0].round().to(out["mask"].dtype)
    if "keypoints" in out or "boxes" in out:
        forward = _forward_pixels(theta, size)  # (B, 2, 3): input pixel -> output pixel
        if "keypoints" in out:
            out["keypoints"] = _apply(forward, out["keypoints"].double()).to(out["keypoints"].dtype)
            out = _hide_outside(out, size)
        if "boxes" in out:
            b = out["boxes"].double()
            x0, y0, x1, y1 = b.unbind(-1)
            corners = (
                torch.stack(  # (B, M, 4, 2); corners are edges: pixel coordinate - 0.5
                    [torch.stack(c, -1) for c in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], dim=2
                )
                - 0.5
            )
            B, M = b.shape[:2]
            moved = _apply(forward, corners.reshape(B, M * 4, 2)).reshape(B, M, 4, 2) + 0.5
            lo, hi = moved.amin(dim=2), moved.amax(dim=2)
            boxes = torch.cat([lo, hi], dim=-1).to(out["boxes"].dtype)
            out = _clip_boxes({**out, "boxes": boxes}, size)
    return out


def _forward_pixels(theta: Tensor, size: tuple[int, int]) -> Tensor:
    """The map from input to output pixel coordinates that ``theta`` (output -> input,
    normalised, align_corners=False) resamples by."""
    H, W = size
    t = theta.double()
    # pixel p -> normalised n = (p + 0.5) * 2 / size - 1 = D p + c
    D = torch.tensor([2 / W, 2 / H], dtype=torch.float64)
    c = torch.tensor([1 / W - 1, 1 / H - 1], dtype=torch.float64)
    A, b = t[:, :, :2], t[:, :, 2]
    # p_in = D^-1 (A (D p_out + c) + b - c)  =  M p_out + k
    M = A * D[None, None, :] / D[None, :, None]
    k = ((A @ c) + b - c) / D
    M_inv = torch.linalg.inv(M)
    return torch.cat([M_inv, -(M_inv @ k[..., None])], dim=2)


def _apply(matrix: Tensor, points: Tensor) -> Tensor:
    """(B, 2, 3) affine maps applied to (B, P, 2) points."""
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]


def _hide_outside(targets: Targets, size: tuple[int, int]) -> Targets:
    H, W = size
    kp = targets["keypoints"]
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= W - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= H - 1)
    visible = targets.get("visible", torch.ones(kp.shape[:2], dtype=torch.bool))
    return {**targets, "visible": visible & inside}


def _clip_boxes(targets: Targets, size: tuple[int, int]) -> Targets:
    H, W = size
    b = targets["boxes"]
    x0, y0, x1, y1 = b.unbind(-1)
    clipped = torch.stack([x0.clamp(0, W), y0.clamp(0, H), x1.clamp(0, W), y1.clamp(0, H)], -1)
    empty = (clipped[..., 2] <= clipped[..., 0]) | (clipped[..., 3] <= clipped[..., 1])
    out = {**targets, "boxes": torch.where(empty[..., None], torch.zeros_like(clipped), clipped)}
    if "classes" in out:
        out["classes"] = torch.where(empty, torch.full_like(out["classes"], -1), out["classes"])
    return out
