"""Multi-label classification metrics: average precision, F1 variants, per-class thresholds."""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import Tensor

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.tasks.metrics import require_same_shape


def _check_scores_targets(scores: Tensor, targets: Tensor, num_classes: int | None = None) -> None:
    """Shapes (N, K) alike, scores probabilities in [0, 1], targets 0/1."""
    require_same_shape("scores", scores, "targets", targets)
    if scores.dim() != 2 or (num_classes is not None and scores.shape[1] != num_classes):
        k = "K" if num_classes is None else str(num_classes)
        raise ShapeMismatchError(f"Expected scores (N, {k}), received {tuple(scores.shape)}")
    if scores.numel() == 0:
        return
    if not scores.is_floating_point():
        raise ConfigError(f"Expected float probabilities, received scores of dtype {scores.dtype}")
    outside = scores[~((scores >= 0) & (scores <= 1))]  # catches nan too
    if outside.numel() > 0:
        raise ConfigError(
            f"Expected scores in [0, 1] (apply sigmoid to logits), received {float(outside[0])}"
        )
    not_binary = targets[(targets != 0) & (targets != 1)]
    if not_binary.numel() > 0:
        raise ConfigError(f"Expected targets of 0/1, received {not_binary[0].item()}")


def _sorted_columns(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each column sorted by descending score: (scores, cumulative true positives, group end).

    ``group_end[i, k]`` is the last row index of the run of equal scores holding row ``i``,
    so a threshold between distinct scores takes a whole run of ties at once (sklearn's
    ``precision_recall_curve``).
    """
    n = scores.shape[0]
    s, order = scores.to(torch.float64).sort(dim=0, descending=True, stable=True)
    tp = targets.gather(0, order).to(torch.int64).cumsum(0)  # (N, K)
    rows = torch.arange(n, device=s.device).unsqueeze(1).expand_as(s)
    is_end = torch.ones_like(s, dtype=torch.bool)
    is_end[:-1] = s[:-1] != s[1:]
    ends = torch.where(is_end, rows, n)
    group_end = ends.flip(0).cummin(0).values.flip(0)  # nearest end at or below each row
    return s, tp, group_end


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-column AP exactly as scikit-learn's ``average_precision_score``.

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct scores taken as thresholds in
    descending order (``score >= threshold`` is positive), with no interpolation.

    Args:
        scores: (N, K) scores; only their order matters.
        targets: (N, K) 0/1 labels.

    Returns:
        Float64 (K,) AP per column; nan for a column without positives.
    """
    require_same_shape("scores", scores, "targets", targets)
    if scores.dim() != 2:
        raise ShapeMismatchError(f"Expected scores (N, K), received {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        return torch.full((scores.shape[1],), math.nan, dtype=torch.float64)
    _, tp, group_end = _sorted_columns(scores, targets)
    y = tp.diff(dim=0, prepend=torch.zeros_like(tp[:1]))  # targets in sorted order
    precision = tp.gather(0, group_end).to(torch.float64) / (
        group_end + 1
    )  # precision at each row's run end
    positives = tp[-1].to(torch.float64)
    ap = (y * precision).sum(0) / positives
    return torch.where(positives > 0, ap, math.nan)


def _f1_from_counts(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """2tp / (2tp + fp + fn), and 0 where that is 0 / 0 (sklearn's ``zero_division=0``)."""
    den = (2 * tp + fp + fn).to(torch.float64)
    return torch.where(den > 0, 2 * tp / den.clamp(min=1), 0.0)


def choose_thresholds(scores: Tensor, targets: Tensor, grid: Tensor | None = None) -> Tensor:
    """Per-class threshold that maximises that class's F1 (``score >= threshold`` is positive).

    Ties go to the smaller threshold. A class without positives keeps 0.5.

    Args:
        scores: (N, K) validation probabilities.
        targets: (N, K) validation 0/1 labels.
        grid: 1-D finite candidate thresholds shared by every class; None: each class's
            own distinct scores (the thresholds where its F1 can change).

    Returns:
        Float64 (K,) thresholds.
    """
    _check_scores_targets(scores, targets)
    y = targets.to(torch.bool)
    positives = y.sum(0)  # (K,)
    fallback = torch.full((scores.shape[1],), 0.5, dtype=torch.float64, device=scores.device)
    if scores.shape[0] == 0:
        return fallback
    if grid is None:
        s, tp, group_end = _sorted_columns(scores, targets)
        f1 = 2 * tp.gather(0, group_end) / (group_end + 1 + positives).to(torch.float64)
        candidates, f1 = s.flip(0), f1.flip(0)  # ascending thresholds
    else:
        if grid.dim() != 1 or grid.numel() == 0 or not bool(grid.isfinite().all()):
            raise ConfigError(f"Expected a non-empty 1-D finite grid, received {grid}")
        g = grid.to(device=scores.device, dtype=torch.float64).sort().values
        s64 = scores.to(torch.float64)
        predicted = _count_at_least(s64, g)  # (G, K)
        tp = _count_at_least(torch.where(y, s64, -math.inf), g)
        f1 = 2 * tp / (predicted + positives).to(torch.float64)
        candidates = g.unsqueeze(1).expand_as(f1)
    # argmax returns the first maximum, i.e. the smallest threshold. Equal F1 fractions give
    # equal doubles (division of exact integers is correctly rounded), so ties are exact.
    chosen = candidates.gather(0, f1.argmax(0, keepdim=True)).squeeze(0)
    return torch.where(positives > 0, chosen, fallback)


def _count_at_least(values: Tensor, grid: Tensor) -> Tensor:
    """(G, K) count of rows of ``values`` (N, K) that are >= each ascending grid value."""
    n = values.shape[0]
    columns = values.T.contiguous().sort(dim=1).values  # (K, N) ascending
    below = torch.searchsorted(columns, grid.expand(columns.shape[0], -1).contiguous())
    return (n - below).T


class MultilabelScores(TypedDict):
    """What ``MultilabelMetrics.compute`` returns; per-class lists are indexed by class."""

    macro_ap: float
    micro_ap: float
    sample_f1: float
    macro_f1: float
    micro_f1: float
    exact_match: float
    per_class_ap: list[float]
    per_class_f1: list[float]


class MultilabelMetrics:
    """AP, F1 and subset accuracy of K independent yes/no labels (sigmoid outputs).

    Policies:
        - AP is scikit-learn's ``average_precision_score`` (step-wise, no interpolation,
          tied scores taken together). A class with no positive target in everything seen
          has nan AP and is left out of ``macro_ap``; ``macro_ap`` is nan when no class
          has a positive. ``micro_ap`` is the AP of all N·K entries pooled.
        - A label is predicted when ``score >= threshold``.
        - F1 follows sklearn's ``zero_division=0``: a class (``macro_f1``, ``per_class_f1``)
          or sample (``sample_f1``) with no true and no predicted label scores 0 and still
          counts in the mean, unlike AP.
        - ``exact_match`` is the fraction of samples whose K predictions all equal the targets.
        - Every score is nan before any sample.

    Scores are kept (AP needs all of them) as detached per-batch tensors joined in ``compute``.

    Args:
        num_classes: K, the number of labels.
    """

    def __init__(self, num_classes: int) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"Expected num_classes an int >= 1, received {num_classes!r}")
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen."""
        self._scores: list[Tensor] = []
        self._targets: list[Tensor] = []

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add one batch.

        Args:
            scores: (N, K) probabilities in [0, 1].
            targets: (N, K) 0/1 labels (any dtype).
        """
        _check_scores_targets(scores, targets, self.num_classes)
        if scores.shape[0] == 0:
            return
        self._scores.append(scores.detach())
        self._targets.append(targets.detach().to(torch.bool))

    def seen(self) -> tuple[Tensor, Tensor]:
        """Every score (float) and target (bool) seen so far, each (N, K)."""
        k = self.num_classes
        if not self._scores:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.bool)
        return torch.cat(self._scores), torch.cat(self._targets)

    def choose_thresholds(self, grid: Tensor | None = None) -> Tensor:
        """``choose_thresholds`` on everything seen (call it on validation data)."""
        return choose_thresholds(*self.seen(), grid=grid)

    def compute(self, thresholds: Tensor | float = 0.5) -> MultilabelScores:
        """Scores over every sample seen since the last ``reset``.

        Args:
            thresholds: One threshold for every class, or a (K,) tensor of per-class ones.
        """
        scores, y = self.seen()
        k = self.num_classes
        thr = torch.as_tensor(thresholds, dtype=torch.float64, device=scores.device)
        if thr.dim() > 1 or thr.numel() not in (1, k):
            raise ShapeMismatchError(
                f"Expected a float or ({k},) thresholds, received {tuple(thr.shape)}"
            )
        if scores.shape[0] == 0:
            nan = math.nan
            return MultilabelScores(
                macro_ap=nan,
                micro_ap=nan,
                sample_f1=nan,
                macro_f1=nan,
                micro_f1=nan,
                exact_match=nan,
                per_class_ap=[nan] * k,
                per_class_f1=[nan] * k,
            )
        pred = scores.to(torch.float64) >= thr
        tp, fp, fn = (pred & y), (pred & ~y), (~pred & y)
        per_class_ap = average_precision(scores, y)
        has_positive = ~per_class_ap.isnan()
        per_class_f1 = _f1_from_counts(tp.sum(0), fp.sum(0), fn.sum(0))
        return MultilabelScores(
            macro_ap=float(per_class_ap[has_positive].mean()) if has_positive.any() else math.nan,
            micro_ap=float(average_precision(scores.reshape(-1, 1), y.reshape(-1, 1))[0]),
            sample_f1=float(_f1_from_counts(tp.sum(1), fp.sum(1), fn.sum(1)).mean()),
            macro_f1=float(per_class_f1.mean()),
            micro_f1=float(_f1_from_counts(tp.sum(), fp.sum(), fn.sum())),
            exact_match=float((pred == y).all(1).to(torch.float64).mean()),
            per_class_ap=per_class_ap.tolist(),
            per_class_f1=per_class_f1.tolist(),
        )
