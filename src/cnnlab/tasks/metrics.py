"""Stateful metrics that accumulate over batches: a weighted mean, segmentation and keypoints.

Each metric has ``update`` (one call per batch, counts kept in float64/int64 tensors on
the device of the first batch), ``compute`` and ``reset``. Multi-label classification
lives in ``metrics_multilabel``.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import Tensor

from cnnlab.core.errors import ConfigError, ShapeMismatchError


def require_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raise ``ShapeMismatchError`` naming both shapes unless ``a`` and ``b`` have the same one."""
    if a.shape != b.shape:
        raise ShapeMismatchError(
            f"Expected {name_a} and {name_b} of the same shape, received "
            f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)}"
        )


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"Expected {name} an int >= 1, received {name}={value!r}")
    return value


def _ratio(numerator: Tensor | float, denominator: Tensor | float) -> float:
    """``numerator / denominator`` as a float, nan when the denominator is 0."""
    den = float(denominator)
    return float(numerator) / den if den != 0 else math.nan


class Mean:
    """Mean of a per-batch value (a loss) weighted by batch size.

    The sum stays a float64 tensor on the value's device, so ``update`` never waits for
    the accelerator; ``compute`` is the one sync.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every value seen."""
        self._sum: Tensor | None = None
        self._count = 0

    def update(self, value: Tensor | float, n: int = 1) -> None:
        """Add one batch.

        Args:
            value: The batch's mean (a scalar; a tensor is detached).
            n: Number of samples the mean was taken over; 0 adds nothing.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"Expected n an int >= 0, received n={n!r}")
        v = torch.as_tensor(value, dtype=torch.float64).detach()
        if v.numel() != 1:
            raise ShapeMismatchError(f"Expected a scalar value, received shape {tuple(v.shape)}")
        if n == 0:
            return
        term = v.reshape(()) * n
        self._sum = term if self._sum is None else self._sum + term.to(self._sum.device)
        self._count += n

    @property
    def count(self) -> int:
        """Number of samples seen."""
        return self._count

    def compute(self) -> float:
        """The weighted mean; nan before any sample."""
        if self._sum is None:
            return math.nan
        return _ratio(self._sum, self._count)


class SegmentationScores(TypedDict):
    """What ``SegmentationMetrics.compute`` returns; per-class lists are indexed by class id."""

    per_class_iou: list[float]
    miou: float
    pixel_accuracy: float
    per_class_dice: list[float]
    mean_dice: float
    fg_iou: float


class SegmentationMetrics:
    """IoU, Dice and pixel accuracy from a K x K confusion matrix (rows: target, columns: pred).

    Policies:
        - Pixels whose target equals ``ignore_index`` are skipped whatever the prediction
          there. Every other pixel must have target and prediction in [0, K): any other
          value raises ``ConfigError`` (a prediction may not abstain).
        - A class absent from both prediction and target in everything seen has an
          undefined IoU/Dice: it is nan in the per-class lists and left out of ``miou`` and
          ``mean_dice`` (not scored 0 or 1). A class present in either one is included,
          so a class that is only predicted scores 0.
        - ``fg_iou`` merges every class != 0 into "foreground" against class 0; nan when
          neither prediction nor target has any foreground.
        - Every score is nan before any pixel is counted.

    Args:
        num_classes: K, the number of classes (ids 0 .. K-1).
        ignore_index: Target value of pixels to skip (None: skip nothing). Must lie
            outside [0, K).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = _positive_int("num_classes", num_classes)
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ConfigError(
                f"Expected ignore_index outside the class ids [0, {num_classes}), "
                f"received ignore_index={ignore_index}"
            )
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Zero the confusion matrix."""
        self._confmat: Tensor | None = None

    @property
    def confusion_matrix(self) -> Tensor:
        """Int64 (K, K) counts: entry [t, p] = pixels of target t predicted as p."""
        k = self.num_classes
        if self._confmat is None:
            return torch.zeros(k, k, dtype=torch.int64)
        return self._confmat.reshape(k, k).clone()

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch to the confusion matrix (one ``bincount``).

        Args:
            pred: Integer class ids shaped like ``target``, or float logits with the
                class dimension at 1, e.g. (N, K, H, W), reduced by argmax.
            target: Integer class ids, e.g. (N, H, W).
        """
        t = target.reshape(-1).long()
        p = self._class_ids(pred, target).reshape(-1).long()
        if self.ignore_index is not None:
            keep = t != self.ignore_index
            t, p = t[keep], p[keep]
        if t.numel() == 0:
            return
        self._check_range("target", t)
        self._check_range("pred", p)
        k = self.num_classes
        counts = torch.bincount(t * k + p, minlength=k * k)
        self._confmat = counts if self._confmat is None else self._confmat + counts

    def _class_ids(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred`` as class ids shaped like ``target``, after checking dtypes and shapes."""
        if target.is_floating_point() or target.is_complex():
            raise ConfigError(f"Expected integer target class ids, received dtype {target.dtype}")
        if pred.is_floating_point() and pred.dim() == target.dim() + 1:
            if pred.shape[1] != self.num_classes:
                raise ShapeMismatchError(
                    f"Expected logits with {self.num_classes} classes at dim 1, received "
                    f"pred {tuple(pred.shape)} for target {tuple(target.shape)}"
                )
            pred = pred.argmax(dim=1)
        elif pred.is_floating_point() or pred.is_complex():
            raise ConfigError(
                f"Expected integer class ids shaped like target {tuple(target.shape)} or float "
                f"logits (N, K, ...), received {pred.dtype} pred {tuple(pred.shape)}"
            )
        require_same_shape("pred", pred, "target", target)
        return pred

    def _check_range(self, name: str, ids: Tensor) -> None:
        bad = ids[(ids < 0) | (ids >= self.num_classes)]
        if bad.numel() > 0:
            allowed = "" if self.ignore_index is None else f" (or ignore_index={self.ignore_index})"
            where = " at a pixel whose target is not ignored" if name == "pred" else ""
            raise ConfigError(
                f"Expected {name} class ids in [0, {self.num_classes}){allowed}, "
                f"received {int(bad[0])}{where}"
            )

    def compute(self) -> SegmentationScores:
        """Scores over every pixel seen since the last ``reset``."""
        cm = self.confusion_matrix.to(torch.float64)
        tp = cm.diagonal()
        union = cm.sum(0) + cm.sum(1) - tp  # tp + fp + fn
        present = union > 0
        nan = torch.full_like(tp, math.nan)
        iou = torch.where(present, tp / union.clamp(min=1), nan)
        dice = torch.where(present, 2 * tp / (union + tp).clamp(min=1), nan)
        fg_tp = cm[1:, 1:].sum()
        fg_union = cm.sum() - cm[0, 0]  # every pixel with foreground in target or pred
        return SegmentationScores(
            per_class_iou=iou.tolist(),
            miou=float(iou[present].mean()) if present.any() else math.nan,
            pixel_accuracy=_ratio(tp.sum(), cm.sum()),
            per_class_dice=dice.tolist(),
            mean_dice=float(dice[present].mean()) if present.any() else math.nan,
            fg_iou=_ratio(fg_tp, fg_union),
        )


class KeypointScores(TypedDict):
    """What ``KeypointMetrics.compute`` returns; distances in pixels."""

    rmse_px: float
    mean_distance_px: float
    pck: float
    per_keypoint_rmse: list[float]


class KeypointMetrics:
    """RMSE, mean distance and PCK of predicted keypoints, over visible points only.

    Definitions (a "point" is one visible (sample, keypoint) pair):
        - ``rmse_px``: sqrt of the mean over visible points of dx² and dy² taken as
          separate entries, i.e. sqrt(sum(dx² + dy²) / (2 · points)). This is Kaggle's
          facial-keypoints RMSE over the 30 x/y columns with missing entries left out.
        - ``per_keypoint_rmse``: the same per keypoint index; nan for a keypoint never visible.
        - ``mean_distance_px``: mean Euclidean distance sqrt(dx² + dy²).
        - ``pck``: fraction of points with distance <= ``pck_alpha · max(H, W)``; the
          normaliser is the longer image side, the same for every sample.
        - Every score is nan before any visible point. Invisible points may hold nan
          targets; they never reach the sums.

    Args:
        image_size: (H, W) in pixels, or one int for a square image.
        pck_alpha: PCK threshold as a fraction of max(H, W).
    """

    def __init__(self, image_size: int | tuple[int, int], pck_alpha: float = 0.05) -> None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in size):
            raise ConfigError(f"Expected image_size an int or (H, W), received {image_size!r}")
        self.image_size = (_positive_int("H", size[0]), _positive_int("W", size[1]))
        if not pck_alpha > 0:
            raise ConfigError(f"Expected pck_alpha > 0, received pck_alpha={pck_alpha!r}")
        self.pck_alpha = float(pck_alpha)
        self.pck_threshold_px = self.pck_alpha * max(self.image_size)
        self.reset()

    def reset(self) -> None:
        """Forget every point seen (the number of keypoints is fixed again by the next batch)."""
        self._sums: Tensor | None = None  # float64 (2, P): sum of dx² + dy², sum of distances
        self._counts: Tensor | None = None  # int64 (2, P): visible points, points within PCK

    def update(self, pred: Tensor, target: Tensor, visible: Tensor | None = None) -> None:
        """Add one batch.

        Args:
            pred: (N, P, 2) predicted (x, y) in pixels.
            target: (N, P, 2) true (x, y) in pixels.
            visible: (N, P) bool, True where the target point exists; None: all visible.
        """
        require_same_shape("pred", pred, "target", target)
        if pred.dim() != 3 or pred.shape[2] != 2:
            raise ShapeMismatchError(f"Expected pred (N, P, 2), received {tuple(pred.shape)}")
        if visible is None:
            visible = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
        if visible.shape != pred.shape[:2]:
            raise ShapeMismatchError(
                f"Expected visible {tuple(pred.shape[:2])} for pred {tuple(pred.shape)}, "
                f"received visible {tuple(visible.shape)}"
            )
        if self._sums is not None and self._sums.shape[1] != pred.shape[1]:
            raise ShapeMismatchError(
                f"Expected {self._sums.shape[1]} keypoints as in earlier batches, "
                f"received pred {tuple(pred.shape)}"
            )
        vis = visible.bool()
        diff = pred.to(torch.float64) - target.to(torch.float64)
        sq = torch.where(vis, diff.square().sum(dim=2), 0.0)  # (N, P); where drops nan targets
        dist = sq.sqrt()
        sums = torch.stack([sq.sum(0), dist.sum(0)])
        counts = torch.stack([vis.sum(0), (vis & (dist <= self.pck_threshold_px)).sum(0)])
        if self._sums is None or self._counts is None:
            self._sums, self._counts = sums, counts
        else:
            self._sums, self._counts = self._sums + sums, self._counts + counts

    def compute(self) -> KeypointScores:
        """Scores over every visible point seen since the last ``reset``."""
        if self._sums is None or self._counts is None:
            return KeypointScores(
                rmse_px=math.nan, mean_distance_px=math.nan, pck=math.nan, per_keypoint_rmse=[]
            )
        (sq_err, dist), (visible, within) = self._sums, self._counts
        points = visible.sum()
        per_keypoint = (sq_err / (2 * visible)).sqrt()  # 0 / 0 = nan for never-visible keypoints
        return KeypointScores(
            rmse_px=math.sqrt(_ratio(sq_err.sum(), 2 * points)),
            mean_distance_px=_ratio(dist.sum(), points),
            pck=_ratio(within.sum(), points),
            per_keypoint_rmse=per_keypoint.tolist(),
        )
