"""Bounding-box operations in plain torch: formats, IoU/GIoU, NMS and validation.

Boxes are float tensors (..., 4). Unless a function says otherwise they are "xyxy":
(x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, in pixels. The other formats are "xywh"
(top-left corner, width, height) and "cxcywh" (centre, width, height). The semantics
follow torchvision.ops (which cnnlab does not import) so that numbers and kept indices
match it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
Reduction = Literal["none", "mean", "sum"]
FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")


def _check_last_dim(boxes: Tensor, what: str) -> None:
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ShapeMismatchError(
            f"Expected {what} of shape (..., 4), received {tuple(boxes.shape)}"
        )


def _check_rows(boxes: Tensor, what: str) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ShapeMismatchError(f"Expected {what} of shape (N, 4), received {tuple(boxes.shape)}")


def _check_format(fmt: str, name: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"Expected {name} one of {', '.join(FORMATS)}, received {fmt!r}")


# ---------------------------------------------------------------- formats


def box_convert(boxes: Tensor, in_fmt: BoxFormat, out_fmt: BoxFormat) -> Tensor:
    """Converts boxes between the "xyxy", "xywh" and "cxcywh" formats.

    Args:
        boxes: boxes (..., 4) in ``in_fmt``.
        in_fmt: the format of ``boxes``.
        out_fmt: the format to return.

    Returns:
        A new tensor (..., 4) in ``out_fmt`` (a copy even when the formats agree).
    """
    _check_last_dim(boxes, "boxes")
    _check_format(in_fmt, "in_fmt")
    _check_format(out_fmt, "out_fmt")
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    # a, b, c, d are now x1, y1, x2, y2
    if out_fmt == "xywh":
        c, d = c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Areas (...) of xyxy boxes (..., 4)."""
    _check_last_dim(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def degenerate(boxes: Tensor) -> Tensor:
    """BoolTensor (...): True where an xyxy box has zero (or negative) width or height.

    For callers that drop such boxes and count them, after ``check_boxes`` has refused
    the malformed ones.
    """
    _check_last_dim(boxes, "boxes")
    return (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamps xyxy boxes (..., 4) into an image of ``size`` = (height, width)."""
    _check_last_dim(boxes, "boxes")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)  # (..., 2): x1, x2
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)  # interleave back to x1 y1 x2 y2


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64) of the xyxy boxes (N, 4) whose width and height are >= ``min_size``."""
    _check_rows(boxes, "boxes")
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return torch.where((w >= min_size) & (h >= min_size))[0]


# ---------------------------------------------------------------- IoU and GIoU


def _inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas (N, M) of xyxy boxes a (N, 4) and b (M, 4)."""
    _check_rows(a, "boxes a")
    _check_rows(b, "boxes b")
    lt = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection over union (N, M) of xyxy boxes a (N, 4) and b (M, 4).

    Two zero-area boxes give NaN (0 / 0), as in torchvision; NaN never exceeds an NMS
    threshold, so such boxes suppress nothing.
    """
    inter, union = _inter_union(a, b)
    return inter / union


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise generalized IoU (N, M) in [-1, 1] of xyxy boxes a (N, 4) and b (M, 4).

    GIoU = IoU - (C - U) / C, where C is the area of the smallest box enclosing both
    (Rezatofighi et al., 2019, "Generalized Intersection over Union").
    """
    inter, union = _inter_union(a, b)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = rb - lt  # (N, M, 2); no clamp needed, the enclosing box always contains both
    enclose = wh[..., 0] * wh[..., 1]
    return inter / union - (enclose - union) / enclose


def generalized_box_iou_loss(
    a: Tensor, b: Tensor, reduction: Reduction = "none", eps: float = 1e-7
) -> Tensor:
    """Paired GIoU loss 1 - GIoU(a[i], b[i]) of xyxy boxes, for a detector's box loss.

    ``eps`` in both denominators keeps the value and the gradient finite when boxes have
    zero area (a point prediction early in training, or a degenerate target).

    Args:
        a: predicted boxes (..., 4).
        b: target boxes, same shape as ``a``.
        reduction: "none" returns the losses (...); "mean" or "sum" a scalar.
        eps: added to the union and the enclosing area.

    Returns:
        The loss, in [0, 2] for valid boxes.
    """
    _check_last_dim(a, "boxes a")
    if a.shape != b.shape:
        raise ShapeMismatchError(
            f"Expected boxes b of the same shape as a {tuple(a.shape)}, received {tuple(b.shape)}"
        )
    if reduction not in ("none", "mean", "sum"):
        raise ConfigError(f"Expected reduction one of none, mean, sum, received {reduction!r}")
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    iw = (torch.min(ax2, bx2) - torch.max(ax1, bx1)).clamp(min=0)
    ih = (torch.min(ay2, by2) - torch.max(ay1, by1)).clamp(min=0)
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    enclose = (torch.max(ax2, bx2) - torch.min(ax1, bx1)) * (
        torch.max(ay2, by2) - torch.min(ay1, by1)
    )
    giou = inter / (union + eps) - (enclose - union) / (enclose + eps)
    loss = 1 - giou
    if reduction == "mean":
        # an empty batch (no matched boxes) contributes 0, not NaN
        return loss.sum() * 0.0 if loss.numel() == 0 else loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# ---------------------------------------------------------------- NMS


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, max_kept: int | None = None) -> Tensor:
    """Greedy non-maximum suppression, with torchvision.ops.nms's semantics.

    Boxes are visited by decreasing score (ties: lower index first); a box is dropped when
    its IoU with an already kept box is > ``iou_threshold``.

    The suppression runs as tensor ops in a loop of fixed length N (boxes.shape[0]), with
    no ``.item()`` on data, so ``torch.export`` can trace it (for a static N: the loop is
    unrolled). It holds the (N, N) IoU matrix, O(N^2) memory and time: it is meant for at
    most a few thousand boxes, which is what detectors keep before NMS.

    Args:
        boxes: xyxy boxes (N, 4).
        scores: scores (N,).
        iou_threshold: boxes overlapping a kept box by more than this are discarded.
        max_kept: return only the first ``max_kept`` kept boxes (a detector's 100 per
            image). Exact: which boxes the greedy pass keeps first depends only on the
            boxes ranked above them; outside tracing it also stops the pass early.

    Returns:
        Indices (int64) of the kept boxes, sorted by decreasing score.
    """
    _check_rows(boxes, "boxes")
    if scores.shape != (boxes.shape[0],):
        raise ShapeMismatchError(
            f"Expected scores of shape ({boxes.shape[0]},) to match boxes {tuple(boxes.shape)}, "
            f"received {tuple(scores.shape)}"
        )
    n = boxes.shape[0]
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    ranked = boxes.detach()[order]
    if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
        return order[_greedy_eager(ranked, iou_threshold, max_kept)]
    # over[i, j]: the i-th ranked box would suppress the j-th; only j > i (lower rank) counts
    over = (box_iou(ranked, ranked) > iou_threshold).triu(diagonal=1)
    keep = torch.ones(n, dtype=torch.bool, device=boxes.device)
    for i in range(n):
        # keep[i] is final here (every higher-ranked box has been visited); if kept, it
        # removes the lower-ranked boxes it overlaps
        keep = keep & ~(over[i] & keep[i])
    return order[keep][:max_kept]


def _greedy_eager(ranked: Tensor, iou_threshold: float, max_kept: int | None) -> Tensor:
    """The same greedy pass outside tracing: each kept box computes its IoU with the boxes
    below it only, O(kept x N) instead of the (N, N) matrix; the arithmetic is box_iou's,
    in the same dtype and order, so the same comparisons come out at the threshold."""
    b = ranked.cpu().numpy()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(b), dtype=bool)
    kept = []
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 = NaN suppresses nothing
        for i in range(len(b)):
            if suppressed[i]:
                continue
            kept.append(i)
            if len(kept) == max_kept:
                break
            rest = b[i + 1 :]
            w = np.maximum(np.minimum(b[i, 2], rest[:, 2]) - np.maximum(b[i, 0], rest[:, 0]), 0)
            h = np.maximum(np.minimum(b[i, 3], rest[:, 3]) - np.maximum(b[i, 1], rest[:, 1]), 0)
            inter = w * h
            suppressed[i + 1 :] |= inter / (area[i] + area[i + 1 :] - inter) > iou_threshold
    return torch.tensor(kept, dtype=torch.int64, device=ranked.device)


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float,
    max_kept: int | None = None,
) -> Tensor:
    """Class-aware NMS: boxes whose ``idxs`` differ never suppress each other.

    Each class's boxes are shifted by idx * (span + 1), span being the extent of all the
    coordinates, so boxes of different classes cannot overlap; then one ``nms`` runs.
    Shifting by the span (max - min) rather than by the maximum coordinate keeps classes
    apart when coordinates are negative.

    Args:
        boxes: xyxy boxes (N, 4).
        scores: scores (N,).
        idxs: class (or image) indices (N,), integers >= 0.
        iou_threshold: as in ``nms``.
        max_kept: as in ``nms``.

    Returns:
        Indices (int64) of the kept boxes, sorted by decreasing score.
    """
    _check_rows(boxes, "boxes")
    if idxs.shape != (boxes.shape[0],):
        raise ShapeMismatchError(
            f"Expected idxs of shape ({boxes.shape[0]},) to match boxes {tuple(boxes.shape)}, "
            f"received {tuple(idxs.shape)}"
        )
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    low, high = boxes.min(), boxes.max()
    offsets = idxs.to(boxes.dtype) * (high - low + 1)
    return nms(boxes - low + offsets[:, None], scores, iou_threshold, max_kept)


# ---------------------------------------------------------------- validation


def _format_row(row: Tensor) -> str:
    return "[" + ", ".join(f"{v:g}" for v in row.tolist()) + "]"


def _refuse(boxes: Tensor, bad: Tensor, what: str, expected: str) -> None:
    """Raises DataFormatError naming the first bad row, its values and how many are bad."""
    rows = torch.nonzero(bad).flatten().tolist()
    if not rows:
        return
    first = rows[0]
    more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
    raise DataFormatError(
        f"Expected {expected}; received {what} row {first} = {_format_row(boxes[first])}{more}"
    )


def check_boxes(
    boxes: Tensor, *, image_size: tuple[int, int] | None = None, what: str = "boxes"
) -> None:
    """Refuses malformed xyxy boxes from a dataset or an annotation file.

    Zero-width or zero-height boxes pass: see ``degenerate`` to drop and count them.

    Args:
        boxes: xyxy boxes (N, 4).
        image_size: (height, width); if given, boxes must lie within [0, width] x [0, height].
        what: the name used in messages, e.g. "boxes of image 17".

    Raises:
        ShapeMismatchError: ``boxes`` is not (N, 4).
        DataFormatError: a coordinate is NaN or infinite, x2 < x1 or y2 < y1, or a box
            leaves the image.
    """
    _check_rows(boxes, what)
    if boxes.dtype.is_complex or boxes.dtype == torch.bool:
        raise DataFormatError(f"Expected real {what}, received dtype {boxes.dtype}")
    _refuse(boxes, ~torch.isfinite(boxes).all(dim=1), what, "finite coordinates")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    _refuse(boxes, inverted, what, "x1 <= x2 and y1 <= y2 (xyxy boxes)")
    if image_size is None:
        return
    height, width = image_size
    if not (height > 0 and width > 0):
        raise ConfigError(f"Expected image_size (height, width) > 0, received {image_size}")
    outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    expected = f"boxes inside the image, 0 <= x <= {width} and 0 <= y <= {height}"
    _refuse(boxes, outside, what, f"{expected} (image_size={tuple(image_size)})")
