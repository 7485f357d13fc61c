"""Object detection: boxes and classes per image, scored as COCO scores them.

A detector (cnnlab.models.detector) outputs raw per-prior predictions (B, P, 5 + K) and
carries a PriorSpec; :meth:`Detect.bind` reads the spec from the model, and the rule of
its kind (FCOS or SSD, cnnlab.tasks.detect_rules) gives the loss and the decoding.
Targets are padded per image: ``boxes`` (N, M, 4) xyxy in pixels (x2, y2 exclusive
edges) and ``classes`` (N, M), -1 on padding rows.

What `predict` and the report see (:meth:`Detect.scores`): (N, D, 6) rows of x1, y1, x2,
y2, score, label, best first, padded with label -1 up to D = the most found in a batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.detector import PriorSpec
from cnnlab.tasks.base import NoMetrics, Targets, Task, register_task
from cnnlab.tasks.box_fusion import weighted_boxes_fusion
from cnnlab.tasks.coco_eval import DetectionMetrics
from cnnlab.tasks.detect_rules import DecodeSettings, FcosRule, SsdRule, select
from cnnlab.tasks.tta import tta_mode

SHOWN_SCORE = 0.3  # what `predict` prints, draws and writes; evaluation keeps every score
RULES: dict[str, type[FcosRule] | type[SsdRule]] = {"fcos": FcosRule, "ssd": SsdRule}
DEFAULT_NMS = {"fcos": 0.6, "ssd": 0.45}  # each paper's NMS IoU threshold
FUSIONS = (None, "nms", "wbf")  # how an ensemble's members' boxes become one set


def unpad(targets: Targets) -> list[dict[str, Tensor]]:
    """Padded (N, M, 4) boxes and (N, M) classes -> one dict per image, padding dropped."""
    rows = []
    for boxes, classes in zip(targets["boxes"], targets["classes"], strict=True):
        keep = classes >= 0
        rows.append({"boxes": boxes[keep].float(), "labels": classes[keep]})
    return rows


def pad_detections(found: list[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
    """Per-image (boxes, scores, labels) -> (N, D, 6), label -1 on padding rows."""
    most = max((len(b) for b, _, _ in found), default=0)
    out = torch.zeros(len(found), max(most, 1), 6)
    out[..., 5] = -1
    for i, (boxes, scores, labels) in enumerate(found):
        n = len(boxes)
        out[i, :n, :4], out[i, :n, 4], out[i, :n, 5] = boxes, scores, labels.float()
    return out


def shown(scores: Tensor) -> Tensor:
    """The rows of one image's (D, 6) detections that people see: real, >= SHOWN_SCORE."""
    return scores[(scores[:, 5] >= 0) & (scores[:, 4] >= SHOWN_SCORE)]


class DetectTaskMetrics:
    """COCO's detection metrics (cnnlab.tasks.coco_eval) on raw detector outputs."""

    def __init__(self, task: Detect) -> None:
        self.task = task
        self.inner = DetectionMetrics()

    def update(self, outputs: Tensor, targets: Targets) -> None:
        found = self.task.detections(outputs)
        preds = [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in found]
        self.inner.update(preds, unpad(targets))

    def compute(self) -> dict[str, Any]:
        return dict(self.inner.compute())


@register_task
class Detect(Task):
    """Object detection with the rule of the model's kind (FCOS by default, or SSD).

    Options:
        image_size: (H, W) of the images (set from the dataset).
        spec: the model's PriorSpec as a dict (set by :meth:`bind`; recorded).
        score_threshold, iou_threshold, max_detections: how detections are chosen.
        members, fusion: an ensemble's (set by :class:`~cnnlab.models.ensemble.Ensemble`):
            its outputs are its ``members``' outputs side by side, (B, members * P, 5 + K),
            and ``fusion`` says how their boxes become one set: ``"nms"`` (class-aware NMS
            over every member's candidates) or ``"wbf"`` (each member's own detections,
            then weighted boxes fusion at IoU ``fusion_iou``, cnnlab.tasks.box_fusion;
            None: the NMS threshold, so that fusion joins what each member's NMS would
            have called one object, not the neighbours it kept apart).
    """

    name = "detect"
    targets = ("boxes", "classes")
    metric = "map"
    # Averaging the members' raw outputs scored best on nuclei (mAP 0.645 vs NMS 0.638,
    # WBF 0.630, best member 0.635; benchmarks/detect_ensemble.py); "wbf" and "nms" fuse
    # boxes instead.
    ensemble_combine = "mean"
    model_task = "detect"

    def __init__(
        self,
        image_size: list[int] | None = None,
        spec: dict[str, Any] | None = None,
        score_threshold: float = 0.05,
        iou_threshold: float | None = None,
        max_detections: int = 100,
        label_smoothing: float = 0.0,
        members: int = 1,
        fusion: str | None = None,
        fusion_iou: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.size = (int(image_size[0]), int(image_size[1])) if image_size else None
        self.spec = PriorSpec.from_dict(spec) if spec else None
        self.score_threshold, self.iou_threshold = float(score_threshold), iou_threshold
        self.max_detections = int(max_detections)
        if fusion not in FUSIONS or int(members) < 1:
            raise ConfigError(
                f"Expected fusion in {FUSIONS} and members >= 1, received fusion={fusion!r}, "
                f"members={members!r}"
            )
        self.members, self.fusion, self.fusion_iou = int(members), fusion, fusion_iou
        self._priors: dict[tuple[int, int], Tensor] = {}

    # -- the model and the data ------------------------------------------------------------

    def bind(self, model: nn.Module) -> None:
        """Read the detector's PriorSpec (where the outputs' priors lie) and, for an
        ensemble, its members and fusion rule."""
        spec = getattr(model, "spec", None)
        if not isinstance(spec, PriorSpec):
            raise ConfigError(
                f"task 'detect' needs a detector (cnnlab.list_models(task='detect')), "
                f"received a {type(model).__name__} without a PriorSpec"
            )
        self.spec = spec
        # An ensemble (cnnlab.models.ensemble) says how many members' outputs it joins.
        self.members = int(getattr(model, "fusion_members", 1))
        self.fusion = getattr(model, "fusion", None)
        self._priors.clear()

    def check_data(self, data: Any) -> None:
        super().check_data(data)
        H, W = data.input_shape[-2:]
        self.size = (int(H), int(W))
        K = len(data.classes)
        for split, targets in (("train", data.targets_train), ("test", data.targets_test)):
            check_box_targets(
                targets["boxes"],
                targets["classes"],
                K,
                self.size,
                f"dataset {data.name!r} ({split})",
            )

    def expected_output(self, data: Any, batch: int) -> tuple[int, ...]:
        P = len(self.priors())
        return (batch, P, 5 + len(data.classes))

    def output_hint(self, data: Any) -> str:
        return f"use a detector built with num_classes={len(data.classes)}"

    def record_args(self, data: Any) -> dict[str, Any]:
        return {"image_size": list(data.input_shape[-2:]), "spec": self._spec().to_dict()}

    def _spec(self) -> PriorSpec:
        if self.spec is None:
            raise ConfigError("the detect task needs the model's PriorSpec (Detect.bind(model))")
        return self.spec

    def _size(self) -> tuple[int, int]:
        if self.size is None:
            raise ConfigError("the detect task needs image_size (set from the dataset)")
        return self.size

    def priors(self) -> Tensor:
        """(P, 4) priors (cx, cy, w, h) of the model at the task's image size (cached);
        an ensemble's members' priors one after another, (members * P, 4)."""
        size = self._size()
        if size not in self._priors:
            self._priors[size] = self._spec().priors(size).repeat(self.members, 1)
        return self._priors[size]

    def rule(self) -> FcosRule | SsdRule:
        return RULES[self._spec().kind]()

    # -- training and evaluation -----------------------------------------------------------

    def loss(self, outputs: Tensor, targets: Targets) -> dict[str, Tensor]:
        """The rule's loss; an ensemble's is its members' outputs pooled (normalised by
        all their positives: the mean member's loss)."""
        return self.rule().loss(outputs, self.priors(), targets)

    def eval_loss(self, outputs: Tensor, targets: Targets) -> Tensor:
        """The batch's mean loss times its images: the losses are normalised by the
        batch's positives, so a per-image split would be another quantity."""
        return self.loss(outputs, targets)["loss"] * len(outputs)

    def metrics(self) -> DetectTaskMetrics:
        return DetectTaskMetrics(self)

    def train_metrics(self) -> NoMetrics:
        """None: decoding and NMS on every training batch would cost more than the step;
        the validation split gets the COCO numbers."""
        return NoMetrics()

    def eval_outputs(self, model: nn.Module, x: Tensor, tta: Any) -> Tensor:
        """Raw outputs; with TTA the mirrored image's are mapped back onto the original's
        priors (left and right swapped) and averaged, before decoding and NMS."""
        out = model(x).float()
        if tta_mode(tta) == "none":
            return out
        single = self._spec().mirror(self._size())  # (P,): cell -> its mirror image's cell
        index = torch.cat([single + m * len(single) for m in range(self.members)])
        mirrored = model(x.flip(3)).float()[:, index]
        return (out + self.rule().mirror(mirrored)) / 2

    def settings(self) -> DecodeSettings:
        iou = (
            self.iou_threshold if self.iou_threshold is not None else DEFAULT_NMS[self._spec().kind]
        )
        return DecodeSettings(self.score_threshold, 1000, float(iou), self.max_detections)

    def detections(self, outputs: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per image: boxes (n, 4), scores (n,), labels (n,), best first."""
        boxes, scores = self.rule().decode(outputs, self.priors())
        settings = self.settings()
        if self.fusion != "wbf":  # one model, or NMS over all members' candidates
            settings = dataclasses.replace(settings, pre_nms=settings.pre_nms * self.members)
            return [
                select(b, s, self._size(), settings) for b, s in zip(boxes, scores, strict=True)
            ]
        return [self._fused(b, s, settings) for b, s in zip(boxes, scores, strict=True)]

    def _fused(
        self, boxes: Tensor, scores: Tensor, settings: DecodeSettings
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One image's members' detections (each member's own, as it alone would give
        them) fused into one set by weighted boxes fusion, best first."""
        each = [
            select(b, s, self._size(), settings)
            for b, s in zip(boxes.chunk(self.members), scores.chunk(self.members), strict=True)
        ]
        iou = settings.iou_threshold if self.fusion_iou is None else self.fusion_iou
        boxes_list, scores_list, labels_list = (list(t) for t in zip(*each, strict=True))
        fused = weighted_boxes_fusion(boxes_list, scores_list, labels_list, iou_thr=iou)
        return tuple(t[: self.max_detections] for t in fused)  # type: ignore[return-value]

    def scores(self, outputs: Tensor) -> Tensor:
        """(N, D, 6) detections: x1, y1, x2, y2, score, label (-1: padding)."""
        return pad_detections(self.detections(outputs))

    # -- what people see ------------------------------------------------------------------

    def _at(self, rows: Tensor, size: tuple[int, int]) -> Tensor:
        """Boxes of the model's input size moved to ``size`` (H, W)."""
        H, W = self._size()
        scale = torch.tensor([size[1] / W, size[0] / H] * 2)
        return rows[:, :4] * scale

    def summarise(
        self, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> list[tuple[str, str]]:
        """One line per detection scoring SHOWN_SCORE or more: class, score and box in the
        file's pixels."""
        rows = shown(scores)
        if not len(rows):
            return [("objects", f"none found (no score >= {SHOWN_SCORE:.2f})")]
        boxes = self._at(rows, size)
        return [
            (
                f"{classes[int(r[5])]} {float(r[4]):.2f}",
                "box " + " ".join(f"{v:.0f}" for v in b.tolist()),
            )
            for r, b in zip(rows, boxes, strict=True)
        ]

    def records(self, scores: Tensor, size: tuple[int, int], image_id: int) -> list[dict[str, Any]]:
        """COCO result rows (bbox x, y, w, h in the file's pixels) for one image's
        detections scoring SHOWN_SCORE or more (`cnnlab evaluate` scores all of them)."""
        rows = shown(scores)
        boxes = self._at(rows, size)
        return [
            {"image_id": image_id, "category_id": int(r[5]), "score": round(float(r[4]), 5),
             "bbox": [round(v, 2) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1]) for v in [float(v)]]}
            for r, b in zip(rows, boxes, strict=True)
        ]  # fmt: skip

    def pictures(
        self, image: Tensor, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> dict[str, Any]:
        """The image at the file's size with boxes, class names and scores (>= SHOWN_SCORE)."""
        from cnnlab.tasks.detect_views import draw_detections

        rows = shown(scores)
        return {"boxes": draw_detections(image, self._at(rows, size), rows[:, 4:], classes, size)}

    def report_sections(
        self, inputs: Tensor, scores: Tensor, targets: Targets, classes: list[str]
    ) -> list[tuple[str, Any, str]]:
        from cnnlab.tasks.detect_views import report_sections

        return report_sections(inputs, scores, unpad(targets), classes)


def check_box_targets(
    boxes: Tensor, classes: Tensor, num_classes: int, size: tuple[int, int], where: str
) -> None:
    """Raise ConfigError naming ``where``, the image and the row for boxes that are NaN,
    inverted, empty or outside the image, or classes outside [-1, num_classes)."""
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or classes.shape != boxes.shape[:2]:
        raise ConfigError(
            f"{where}: expected boxes (N, M, 4) and classes (N, M), received "
            f"{tuple(boxes.shape)} and {tuple(classes.shape)}"
        )
    H, W = size
    real = classes >= 0
    b = boxes.float()
    problems = {
        f"a class id outside [0, {num_classes})": (classes >= num_classes) | (classes < -1),
        "NaN or infinite coordinates": real & ~torch.isfinite(b).all(-1),
        "x2 <= x1 or y2 <= y1": real & ((b[..., 2] <= b[..., 0]) | (b[..., 3] <= b[..., 1])),
        f"coordinates outside the {W}x{H} image": real
        & ((b[..., :2] < 0).any(-1) | (b[..., 2] > W) | (b[..., 3] > H)),
    }
    for what, bad in problems.items():
        if bool(bad.any()):
            i, m = (int(v) for v in bad.nonzero()[0])
            raise ConfigError(
                f"{where}: {int(bad.sum())} boxes with {what}, e.g. image {i} row {m}: "
                f"box {[round(float(v), 2) for v in boxes[i, m]]} class {int(classes[i, m])}; "
                f"expected x1 < x2 <= {W}, y1 < y2 <= {H}, class in [0, {num_classes})"
            )
