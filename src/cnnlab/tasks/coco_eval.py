"""COCO box detection metrics (AP, AR at IoU 0.50:0.95) equal to pycocotools' COCOeval.

Lin et al., "Microsoft COCO: Common Objects in Context", 2014. Every convention follows
``COCOeval`` (iouType "bbox"): per image and category, detections sorted by score (stable)
and cut to the largest maxDets; greedy matching per IoU threshold that prefers regular gts
over ignored ones; crowd gts matched by intersection over detection area, any number of
times; gts ignored by their annotation ``area`` or ``iscrowd``; the precision envelope read
at 101 recall points; -1 where a category has no gt. Two inputs: COCO dicts or files
(``evaluate_coco``, ``evaluate_coco_files``, in ``coco_io`` and re-exported here) and
tensors (``DetectionMetrics``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError

if TYPE_CHECKING:
    from cnnlab.tasks.coco_io import evaluate_coco, evaluate_coco_files, score_coco

__all__ = [
    "AREA_RANGES",
    "STAT_NAMES",
    "SUMMARY",
    "TENSOR_NAMES",
    "CocoResult",
    "CocoScorer",
    "DetectionMetrics",
    "ImageBoxes",
    "evaluate_coco",
    "evaluate_coco_files",
    "format_table",
    "score_coco",
]
# coco_io imports the scorer from here, so its functions are re-exported on first use:
# importing them at the top would be a cycle that fails when coco_io is imported first.
_IO_EXPORTS = ("evaluate_coco", "evaluate_coco_files", "score_coco")


def __getattr__(name: str) -> Any:
    if name in _IO_EXPORTS:
        return getattr(importlib.import_module("cnnlab.tasks.coco_io"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- the scorer (COCOeval)

AREA_RANGES = {  # pixels² of the gt annotation's `area`; both ends inclusive, as in COCOeval
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
# name, torchmetrics' name (DetectionMetrics.compute), AP (True) or AR, IoU threshold
# (None: mean over all), area, index into max_dets; in COCOeval.summarize()'s order.
SUMMARY = (
    ("AP", "map", True, None, "all", 2),
    ("AP50", "map_50", True, 0.5, "all", 2),
    ("AP75", "map_75", True, 0.75, "all", 2),
    ("APs", "map_small", True, None, "small", 2),
    ("APm", "map_medium", True, None, "medium", 2),
    ("APl", "map_large", True, None, "large", 2),
    ("AR1", "mar_1", False, None, "all", 0),
    ("AR10", "mar_10", False, None, "all", 1),
    ("AR100", "mar_100", False, None, "all", 2),
    ("ARs", "mar_small", False, None, "small", 2),
    ("ARm", "mar_medium", False, None, "medium", 2),
    ("ARl", "mar_large", False, None, "large", 2),
)
STAT_NAMES = tuple(row[0] for row in SUMMARY)
TENSOR_NAMES = {row[0]: row[1] for row in SUMMARY}


@dataclass(frozen=True)
class ImageBoxes:
    """One image's gts and detections; boxes are COCO (x, y, width, height) in float64."""

    gt_boxes: np.ndarray  # (G, 4)
    gt_labels: np.ndarray  # (G,) category ids
    gt_areas: np.ndarray  # (G,) compared with the area ranges (COCO's `area`, not the box's)
    gt_crowd: np.ndarray  # (G,) bool
    gt_ids: np.ndarray  # (G,) annotation ids; COCOeval reads a match to id 0 as no match
    dt_boxes: np.ndarray  # (D, 4)
    dt_labels: np.ndarray  # (D,)
    dt_scores: np.ndarray  # (D,)


class _ImageEval(NamedTuple):
    scores: np.ndarray  # (D,) sorted high to low, at most max_dets[-1]
    tp: np.ndarray  # (A, T, D) bool
    fp: np.ndarray  # (A, T, D) bool
    npig: np.ndarray  # (A,) gts not ignored


def _iou_rows(thresholds: np.ndarray, iou: float | None) -> Any:
    """Rows of one IoU threshold (none if it is missing), or all of them for None."""
    return slice(None) if iou is None else np.flatnonzero(np.abs(thresholds - iou) < 1e-12)


def _mean_valid(x: np.ndarray) -> float:
    """Mean of the entries > -1, or -1 when there are none (COCOeval's summary rule)."""
    valid = x[x > -1]
    return float(np.mean(valid)) if valid.size else -1.0


@dataclass(frozen=True)
class CocoResult:
    """Accumulated COCO evaluation: the 12 summary numbers and the arrays behind them."""

    stats: dict[str, float]  # keys STAT_NAMES
    precision: np.ndarray  # (T, R, K, A, M) as COCOeval.eval["precision"]; -1 without gt
    recall: np.ndarray  # (T, K, A, M) as COCOeval.eval["recall"]
    category_ids: tuple[int, ...]  # K, ascending
    iou_thresholds: np.ndarray  # (T,)
    rec_thresholds: np.ndarray  # (R,)
    area_names: tuple[str, ...]  # A

    def to_dict(self, names: Mapping[int, str] | None = None) -> dict[str, Any]:
        """The 12 numbers under ``STAT_NAMES``; "per_class": {category id: {"name", "AP",
        "AP50"}}; "pr_curves": {category id: precision at each recall point, IoU 0.5};
        "recall_thresholds": those points.
        """
        names = names or {}
        ap, ap50 = self.per_class_ap(), self.per_class_ap(0.5)
        per_class = {c: {"name": names.get(c, str(c)), "AP": ap[c], "AP50": ap50[c]} for c in ap}
        curves = {c: curve.tolist() for c, curve in self.pr_curves(0.5).items()}
        return {
            **self.stats,
            "per_class": per_class,
            "pr_curves": curves,
            "recall_thresholds": self.rec_thresholds.tolist(),
        }

    def _iou_index(self, iou: float | None) -> Any:
        index = _iou_rows(self.iou_thresholds, iou)
        if iou is not None and not len(index):
            raise ConfigError(f"Expected iou one of {self.iou_thresholds.tolist()}, received {iou}")
        return index

    def per_class_ap(self, iou: float | None = None) -> dict[int, float]:
        """AP per category (area all, largest maxDets), -1 for a category without gt.

        Args:
            iou: One IoU threshold (0.5 gives AP50); None averages over all of them.
        """
        s = self.precision[self._iou_index(iou)][:, :, :, self.area_names.index("all"), -1]
        return {c: _mean_valid(s[:, :, k]) for k, c in enumerate(self.category_ids)}

    def pr_curves(self, iou: float = 0.5) -> dict[int, np.ndarray]:
        """Interpolated precision (R,) at ``rec_thresholds``, per category; -1 without gt."""
        t = self._iou_index(iou)[0]
        a = self.area_names.index("all")
        return {c: self.precision[t, :, k, a, -1].copy() for k, c in enumerate(self.category_ids)}


def _box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU (D, G) of xywh boxes; against a crowd gt, intersection over the detection's area.

    The arithmetic and its order are pycocotools' ``bbIou`` (no +1 on widths), so an IoU
    that lands exactly on a threshold compares the same way.
    """
    dx, dy, dw, dh = (dt[:, i, None] for i in range(4))
    gx, gy, gw, gh = (gt[None, :, i] for i in range(4))
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = w * h
    d_area = dw * dh
    union = np.where(crowd[None, :], d_area, d_area + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def _greedy_match(
    ious: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Index of the gt each detection matches, -1 for none: (A, T, D) for every area range
    (``gt_ignore`` (A, G)) and IoU threshold at once, detections in score order.

    COCOeval scans gts with regular ones first and keeps the last one whose IoU is >= the
    best so far, stopping at the first ignored gt once a regular one matched: so the match
    is the last best among regular candidates if there is one, else among ignored ones.
    """
    (D, G), A, T = ious.shape, gt_ignore.shape[0], len(thresholds)
    match = np.full((A, T, D), -1)
    if D == 0 or G == 0:
        return match
    taken = np.zeros((A, T, G), dtype=bool)  # matched non-crowd gts; crowds stay open
    thr = np.minimum(thresholds, 1 - 1e-10)[None, :, None]
    ignored = gt_ignore[:, None, :]
    for d in range(D):
        ok = ~taken & (ious[d] >= thr)  # (A, T, G)
        regular = ok & ~ignored
        use = np.where(regular.any(-1, keepdims=True), regular, ok)
        best = G - 1 - np.argmax(np.where(use, ious[d], -np.inf)[..., ::-1], axis=-1)
        hit = use.any(-1)
        match[..., d] = np.where(hit, best, -1)
        a, t = np.nonzero(hit)
        taken[a, t, best[hit]] |= ~crowd[best[hit]]
    return match


def _positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    if len(values) != 3 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
    ):
        raise ConfigError(f"Expected {name} three ints >= 1, received {name}={values!r}")
    return tuple(sorted(values))


def _unit_vector(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or not x.size or not np.all((x >= 0) & (x <= 1)):
        raise ConfigError(f"Expected {name} a non-empty list in [0, 1], received {values!r}")
    return x


class CocoScorer:
    """COCOeval's evaluate, accumulate and summarize for boxes, on arrays.

    Args:
        iou_thresholds: IoU thresholds T; default COCO's 0.50, 0.55, ..., 0.95.
        rec_thresholds: Recall points R at which precision is read; default 0, 0.01, ..., 1.
        max_dets: Three caps on detections per image and category; the summary's AR1, AR10,
            AR100 use them in turn and every AP the largest.
        area_ranges: Name -> (low, high) gt area, inclusive; needs "all". The summary reads
            "small", "medium" and "large" and gives -1 for one that is missing.
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] | np.ndarray | None = None,
        rec_thresholds: Sequence[float] | np.ndarray | None = None,
        max_dets: Sequence[int] = (1, 10, 100),
        area_ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        # linspace, not arange: COCO's thresholds are exactly these floats
        ious = np.linspace(0.5, 0.95, 10) if iou_thresholds is None else iou_thresholds
        recs = np.linspace(0.0, 1.0, 101) if rec_thresholds is None else rec_thresholds
        self.iou_thresholds = _unit_vector("iou_thresholds", ious)
        self.rec_thresholds = _unit_vector("rec_thresholds", recs)
        self.max_dets = _positive_ints("max_dets", max_dets)
        ranges = dict(AREA_RANGES if area_ranges is None else area_ranges)
        if "all" not in ranges or any(len(r) != 2 or r[0] > r[1] for r in ranges.values()):
            raise ConfigError(f"Expected area_ranges with 'all' and low <= high, received {ranges}")
        self.area_names = tuple(ranges)
        self._bounds = np.array([ranges[n] for n in self.area_names], dtype=np.float64)

    def score(self, images: Sequence[ImageBoxes], category_ids: Sequence[int]) -> CocoResult:
        """Evaluate every image and category, accumulate and summarize.

        Args:
            images: In ascending image id, the order COCOeval concatenates them in, which
                breaks score ties between images.
            category_ids: The categories to score; detections of any other are dropped.
        """
        cats = tuple(sorted({int(c) for c in category_ids}))
        column = {c: k for k, c in enumerate(cats)}
        evals: list[list[_ImageEval]] = [[] for _ in cats]
        for image in images:
            for label in np.union1d(image.gt_labels, image.dt_labels):
                if int(label) in column:
                    g, d = image.gt_labels == label, image.dt_labels == label
                    evals[column[int(label)]].append(self._evaluate(image, g, d))
        precision, recall = self._accumulate(evals)
        return CocoResult(
            self._summarize(precision, recall),
            precision,
            recall,
            cats,
            self.iou_thresholds,
            self.rec_thresholds,
            self.area_names,
        )

    def _evaluate(self, image: ImageBoxes, g: np.ndarray, d: np.ndarray) -> _ImageEval:
        """COCOeval.evaluateImg for one image and category (masks g, d), all area ranges."""
        order = np.argsort(-image.dt_scores[d], kind="mergesort")[: self.max_dets[-1]]
        dt_boxes, scores = image.dt_boxes[d][order], image.dt_scores[d][order]
        crowd, areas = image.gt_crowd[g], image.gt_areas[g]
        lo, hi = self._bounds[:, :1], self._bounds[:, 1:]  # (A, 1)
        gt_ignore = crowd[None, :] | (areas < lo) | (areas > hi)  # (A, G)
        ious = _box_iou(dt_boxes, image.gt_boxes[g], crowd)
        match = _greedy_match(ious, gt_ignore, crowd, self.iou_thresholds)  # (A, T, D)
        # index -1 (no match) reads the appended 0 id / not-ignored
        matched_id = np.append(image.gt_ids[g], 0)[match]
        padded = np.pad(gt_ignore, ((0, 0), (0, 1)))
        matched_ignored = padded[np.arange(len(padded))[:, None, None], match]
        dt_area = dt_boxes[:, 2] * dt_boxes[:, 3]
        dt_outside = ((dt_area < lo) | (dt_area > hi))[:, None, :]  # (A, 1, D)
        unmatched = matched_id == 0
        ignored = matched_ignored | (unmatched & dt_outside)
        return _ImageEval(scores, ~unmatched & ~ignored, unmatched & ~ignored, (~gt_ignore).sum(1))

    def _accumulate(self, evals: list[list[_ImageEval]]) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval.accumulate: precision (T, R, K, A, M) and recall (T, K, A, M)."""
        T, R, K = len(self.iou_thresholds), len(self.rec_thresholds), len(evals)
        A, M = len(self.area_names), len(self.max_dets)
        precision, recall = -np.ones((T, R, K, A, M)), -np.ones((T, K, A, M))
        for k, images in enumerate(evals):
            if not images:
                continue
            npig = np.sum([e.npig for e in images], axis=0)
            for m, cap in enumerate(self.max_dets):
                scores = np.concatenate([e.scores[:cap] for e in images])
                order = np.argsort(-scores, kind="mergesort")
                tp = np.concatenate([e.tp[..., :cap] for e in images], axis=-1)[..., order]
                fp = np.concatenate([e.fp[..., :cap] for e in images], axis=-1)[..., order]
                tp_sum = np.cumsum(tp, axis=-1, dtype=float)
                fp_sum = np.cumsum(fp, axis=-1, dtype=float)
                for a in np.flatnonzero(npig):
                    pr, rc = self._pr_curve(tp_sum[a], fp_sum[a], npig[a])
                    precision[:, :, k, a, m], recall[:, k, a, m] = pr, rc
        return precision, recall

    def _pr_curve(self, tp: np.ndarray, fp: np.ndarray, npig: int) -> tuple[np.ndarray, np.ndarray]:
        """Precision (T, R) at the recall points and final recall (T,), from cumulative counts."""
        n = tp.shape[1]
        rc = tp / npig
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # best precision at recall >= r
        q = np.zeros((len(tp), len(self.rec_thresholds)))
        for t in range(len(tp)):
            index = np.searchsorted(rc[t], self.rec_thresholds, side="left")
            reached = index < n  # recall points beyond the last detection keep precision 0
            q[t, reached] = pr[t, index[reached]]
        return q, rc[:, -1] if n else np.zeros(len(tp))

    def _summarize(self, precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
        """COCOeval.summarize's 12 numbers: means of the entries > -1, else -1."""
        stats = {}
        for name, _, is_ap, iou, area, m in SUMMARY:
            t = _iou_rows(self.iou_thresholds, iou)
            a = [i for i, n in enumerate(self.area_names) if n == area]
            s = precision[t][:, :, :, a, m] if is_ap else recall[t][:, :, a, m]
            stats[name] = _mean_valid(s)
        return stats


def format_table(stats: Mapping[str, float], max_dets: Sequence[int] = (1, 10, 100)) -> str:
    """COCOeval.summarize()'s 12 lines, from ``STAT_NAMES`` or ``TENSOR_NAMES`` keys."""
    lines = []
    for name, tensor_name, is_ap, iou, area, m in SUMMARY:
        value = stats[name] if name in stats else stats[tensor_name]
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        iou_text = "0.50:0.95" if iou is None else f"{iou:0.2f}"
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6s} "
            f"| maxDets={max_dets[m]:>3d} ] = {value:0.3f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- tensors (training loop)


def _column(item: Mapping[str, Any], key: str, where: str, width: int | None) -> np.ndarray:
    if key not in item:
        raise DataFormatError(f"{where}: expected a {key!r} entry, received keys {sorted(item)}")
    x = torch.as_tensor(item[key]).detach().cpu().to(torch.float64).numpy()
    if x.size == 0:  # torch.zeros(0) and torch.zeros(0, 4) both mean "no boxes"
        x = np.zeros((0,) if width is None else (0, width))
    if x.ndim != (1 if width is None else 2) or (width is not None and x.shape[1] != width):
        want = "(n,)" if width is None else f"(n, {width})"
        raise ShapeMismatchError(f"{where}: expected {key} of shape {want}, received {x.shape}")
    return x.reshape(-1) if width is None else x


def _xywh(item: Mapping[str, Any], where: str, n_keys: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Boxes xyxy -> COCO xywh (float64, as the COCO dicts hold them), then the other keys."""
    b = _column(item, "boxes", where, 4)
    cols = [_column(item, k, where, None) for k in n_keys]
    for k, col in zip(n_keys, cols, strict=True):
        if len(col) != len(b):
            raise ShapeMismatchError(
                f"{where}: expected {len(b)} {k} for {len(b)} boxes, received {len(col)}"
            )
    return (np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]), *cols)


class DetectionMetrics:
    """COCO box AP and AR accumulated over batches, for the training loop.

    ``compute()`` keys are ``TENSOR_NAMES``' values: map, map_50, map_75, map_small,
    map_medium, map_large, mar_1, mar_10, mar_100, mar_small, mar_medium, mar_large.
    Images are numbered 1, 2, ... in the order seen, a gt's area is its box's area and no
    gt is a crowd: the numbers equal COCOeval's on the same boxes written that way. The
    categories are every label seen; one without gt is -1 and out of every mean.
    """

    def __init__(self, scorer: CocoScorer | None = None) -> None:
        self.scorer = scorer or CocoScorer()
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._images: list[ImageBoxes] = []
        self._next_gt_id = 1  # COCOeval reads gt id 0 as "no match"

    def update(
        self, preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
    ) -> None:
        """Add a batch of images.

        Args:
            preds: Per image: boxes (n, 4) x1 y1 x2 y2, scores (n,), labels (n,).
            targets: Per image: boxes (m, 4) x1 y1 x2 y2, labels (m,).
        """
        if len(preds) != len(targets):
            raise ShapeMismatchError(
                f"Expected one target per prediction, received {len(preds)} preds and "
                f"{len(targets)} targets"
            )
        for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
            dt, scores, dt_labels = _xywh(pred, f"preds[{i}]", ("scores", "labels"))
            gt, gt_labels = _xywh(target, f"targets[{i}]", ("labels",))
            first_id, self._next_gt_id = self._next_gt_id, self._next_gt_id + len(gt)
            self._images.append(
                ImageBoxes(
                    gt_boxes=gt,
                    gt_labels=gt_labels.astype(np.int64),
                    gt_areas=gt[:, 2] * gt[:, 3],
                    gt_crowd=np.zeros(len(gt), dtype=bool),
                    gt_ids=np.arange(first_id, self._next_gt_id),
                    dt_boxes=dt,
                    dt_labels=dt_labels.astype(np.int64),
                    dt_scores=scores,
                )
            )

    def result(self) -> CocoResult:
        """The full evaluation: stats, precision and recall arrays, per-class AP, PR curves."""
        labels = [np.union1d(im.gt_labels, im.dt_labels) for im in self._images]
        return self.scorer.score(self._images, np.unique(np.concatenate([[], *labels])).tolist())

    def compute(self) -> dict[str, float]:
        """The 12 COCO numbers under ``TENSOR_NAMES``; all -1 before any gt box."""
        return {TENSOR_NAMES[k]: v for k, v in self.result().stats.items()}
