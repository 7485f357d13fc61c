"""Fusing several detectors' boxes into one set: weighted boxes fusion.

Used by detection ensembles (:class:`cnnlab.models.ensemble.Ensemble` with ``combine="wbf"``,
decoded by :meth:`cnnlab.tasks.detect.Detect.detections`) and usable on its own. Boxes are
xyxy as in :mod:`cnnlab.tasks.boxes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.tasks.boxes import box_iou, check_boxes, degenerate


def _member_weights(weights: Tensor | Sequence[float] | None, m: int) -> Tensor:
    """Member weights as float64 (M,): all 1 when None; else non-negative, positive sum."""
    w = (
        torch.ones(m, dtype=torch.float64)
        if weights is None
        else torch.as_tensor(weights, dtype=torch.float64)
    )
    if tuple(w.shape) != (m,):
        raise ShapeMismatchError(
            f"Expected weights of shape ({m},), one per member, received {tuple(w.shape)}"
        )
    if not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
        raise ConfigError(
            f"Expected finite non-negative weights with a positive sum, received {w.tolist()}"
        )
    return w


def _fuse_one_label(boxes: Tensor, scores: Tensor, iou_thr: float) -> tuple[Tensor, Tensor]:
    """Clusters boxes (B, 4) taken in descending ``scores``; returns fused boxes and scores.

    The returned scores are each cluster's mean score and its size, (C,) and (C,).
    """
    sum_sb = boxes.new_zeros((0, 4))  # per cluster: sum of score * box
    sum_s = boxes.new_zeros(0)
    size: list[int] = []
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        if size:
            iou = box_iou(boxes[i : i + 1], sum_sb / sum_s[:, None])[0]
            best = int(iou.argmax())
            if iou[best] > iou_thr:  # strictly above, as in the paper's reference code
                sum_sb[best] += scores[i] * boxes[i]
                sum_s[best] += scores[i]
                size[best] += 1
                continue
        sum_sb = torch.cat([sum_sb, scores[i] * boxes[i : i + 1]])
        sum_s = torch.cat([sum_s, scores[i : i + 1]])
        size.append(1)
    counts = torch.tensor(size, dtype=boxes.dtype)
    return sum_sb / sum_s[:, None], torch.stack([sum_s / counts, counts], dim=1)


def weighted_boxes_fusion(
    boxes_list: Sequence[Tensor],
    scores_list: Sequence[Tensor],
    labels_list: Sequence[Tensor],
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    weights: Tensor | Sequence[float] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted boxes fusion (Solovyev et al. 2019, "Weighted boxes fusion", arXiv 1910.13302).

    Per label, boxes from all M members are taken in descending score * member weight;
    each joins the cluster whose current fused box it overlaps most if that IoU is
    > ``iou_thr``, else starts one. A fused box is the score-weighted mean of its
    cluster's coordinates; its score is the cluster's mean weighted score times
    min(cluster size, M) / sum(weights) (the paper's rescale: with equal weights,
    mean score * min(T, M) / M, so a box only some members found loses confidence).
    Conventions follow the ``ensemble-boxes`` package except that coordinates are not
    clipped to [0, 1] (any xyxy units work); as there, boxes scoring below
    ``skip_box_thr`` and zero-area boxes are dropped, and so are boxes of weighted
    score 0, which have no say in a score-weighted mean.

    Args:
        boxes_list: M tensors (B_m, 4) of xyxy boxes.
        scores_list: M tensors (B_m,) of non-negative scores.
        labels_list: M tensors (B_m,) of class ids.
        iou_thr: the IoU a box must exceed to join a cluster.
        skip_box_thr: boxes scoring below it are ignored.
        weights: (M,) non-negative member weights; None: all 1.

    Returns:
        Fused boxes (F, 4), scores (F,) and labels (F,), by descending score.
    """
    m = len(boxes_list)
    if m == 0 or len(scores_list) != m or len(labels_list) != m:
        raise ShapeMismatchError(
            f"Expected one boxes, scores and labels tensor per member, received "
            f"{m}, {len(scores_list)} and {len(labels_list)}"
        )
    if not 0.0 <= iou_thr <= 1.0:
        raise ConfigError(f"Expected 0 <= iou_thr <= 1, received iou_thr={iou_thr}")
    w = _member_weights(weights, m)
    rows = []
    for i, (b, s, c) in enumerate(zip(boxes_list, scores_list, labels_list, strict=True)):
        check_boxes(b, what=f"boxes of member {i}")
        if tuple(s.shape) != (len(b),) or tuple(c.shape) != (len(b),):
            raise ShapeMismatchError(
                f"Expected member {i}'s scores and labels of shape ({len(b)},) like its "
                f"boxes, received {tuple(s.shape)} and {tuple(c.shape)}"
            )
        if len(s) and not (torch.isfinite(s).all() and (s >= 0).all()):
            raise ConfigError(f"Expected finite non-negative scores of member {i}")
        keep = (s >= skip_box_thr) & ~degenerate(b) & (s * w[i] > 0)
        row = torch.cat([b.double(), (s.double() * w[i])[:, None], c.double()[:, None]], 1)
        rows.append(row[keep])
    every = torch.cat(rows)  # (B, 6): x1, y1, x2, y2, weighted score, label
    fused, labels = [], []
    for label in every[:, 5].unique().tolist():
        mine = every[every[:, 5] == label]
        boxes, mean_size = _fuse_one_label(mine[:, :4], mine[:, 4], iou_thr)
        scores = mean_size[:, 0] * mean_size[:, 1].clamp_max(m) / w.sum()
        fused.append(torch.cat([boxes, scores[:, None]], 1))
        labels += [int(label)] * len(boxes)
    out = torch.cat(fused) if fused else every.new_zeros((0, 5))
    order = torch.argsort(out[:, 4], descending=True, stable=True)
    dtype = boxes_list[0].dtype if boxes_list[0].is_floating_point() else torch.float32
    label_ids = torch.tensor(labels, dtype=torch.int64)[order]
    return out[order, :4].to(dtype), out[order, 4].to(dtype), label_ids
