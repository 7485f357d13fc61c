"""Multi-label classification: any number of classes per input, sigmoid outputs, BCE, AP."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError
from cnnlab.tasks.base import Targets, Task, register_task
from cnnlab.tasks.metrics_multilabel import MultilabelMetrics
from cnnlab.tasks.tta import tta_mode


class MultilabelTaskMetrics:
    """The task's view of MultilabelMetrics: logits in, scores at its thresholds out."""

    def __init__(self, num_classes: int, thresholds: Tensor | float) -> None:
        self.inner = MultilabelMetrics(num_classes)
        self.thresholds = thresholds

    def update(self, outputs: Tensor, targets: Targets) -> None:
        self.inner.update(outputs.detach().float().sigmoid(), targets["labels"])

    def compute(self) -> dict[str, Any]:
        return dict(self.inner.compute(self.thresholds))


@register_task
class Multilabel(Task):
    """Multi-label classification: a sigmoid per class, binary cross-entropy.

    Options:
        pos_weight: weight of positive examples in the loss, one number or one per class
            (torch's ``BCEWithLogitsLoss(pos_weight=...)``); None = 1.
        thresholds: per-class decision thresholds on the probabilities (saved with a
            trained model: chosen on the validation split to maximise each class' F1,
            cnnlab.tasks.metrics_multilabel.choose_thresholds); default 0.5.
    """

    name = "multilabel"
    targets = ("labels",)
    metric = "macro_ap"
    ensemble_combine = "sigmoid"

    def __init__(
        self,
        pos_weight: float | list[float] | None = None,
        thresholds: float | list[float] = 0.5,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.num_classes = num_classes
        weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        self.criterion = nn.BCEWithLogitsLoss(pos_weight=weight)
        self.thresholds: Tensor | float = (
            torch.as_tensor(thresholds, dtype=torch.float64)
            if isinstance(thresholds, list)
            else float(thresholds)
        )

    def check_data(self, data: Any) -> None:
        super().check_data(data)
        k = self.num_classes = data.num_classes
        for split, targets in (("train", data.targets_train), ("test", data.targets_test)):
            labels = targets["labels"]
            if labels.dim() != 2 or labels.shape[1] != k:
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'labels': expected multi-hot "
                    f"(N, {k}), received shape {tuple(labels.shape)}"
                )
            if len(labels) and not bool(((labels == 0) | (labels == 1)).all()):
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'labels': expected 0/1 values, "
                    f"received values in [{float(labels.min())}, {float(labels.max())}]"
                )

    def expected_output(self, data: Any, batch: int) -> tuple[int, ...]:
        return (batch, data.num_classes)

    def output_hint(self, data: Any) -> str:
        return f"build it with num_classes={data.num_classes}"

    def loss(self, outputs: Tensor, targets: Targets) -> dict[str, Tensor]:
        return {"loss": self.criterion(outputs.float(), targets["labels"].float())}

    def metrics(self) -> MultilabelTaskMetrics:
        if self.num_classes is None:
            raise ConfigError("the multilabel task needs num_classes (set from the dataset)")
        return MultilabelTaskMetrics(self.num_classes, self.thresholds)

    def record_args(self, data: Any) -> dict[str, Any]:
        return {"num_classes": data.num_classes}

    def eval_outputs(self, model: nn.Module, x: Tensor, tta: Any) -> Tensor:
        """Logit of the mean sigmoid over the original and (tta) mirrored inputs."""
        out = model(x).float()
        if tta_mode(tta) == "none" or x.dim() != 4:
            return out
        mirrored = model(x.flip(3)).float()
        p = (out.sigmoid() + mirrored.sigmoid()) / 2
        return torch.logit(p, eps=1e-7)

    def eval_loss(self, outputs: Tensor, targets: Targets) -> Tensor:
        per = F.binary_cross_entropy_with_logits(
            outputs, targets["labels"].float(), reduction="none"
        )
        return per.mean(1).sum()

    def scores(self, outputs: Tensor) -> Tensor:
        """Per-class probabilities."""
        return outputs.sigmoid()

    def calibrate(self, outputs: Tensor, targets: Targets) -> dict[str, Any]:
        """Per-class thresholds that maximise F1 on held-out data (then saved)."""
        metrics = MultilabelMetrics(outputs.shape[1])
        metrics.update(outputs.sigmoid(), targets["labels"])
        chosen = metrics.choose_thresholds()
        self.thresholds = chosen
        return {"thresholds": [round(float(t), 6) for t in chosen]}

    def summarise(
        self, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> list[tuple[str, str]]:
        """Every class with its probability; those over their threshold marked 'yes'."""
        thresholds = torch.as_tensor(self.thresholds, dtype=scores.dtype).expand_as(scores)
        order = scores.argsort(descending=True).tolist()
        return [
            (classes[k], f"{float(scores[k]):.2f}  {'yes' if scores[k] >= thresholds[k] else 'no'}")
            for k in order
        ]

    def report_sections(
        self, inputs: Tensor, scores: Tensor, targets: Targets, classes: list[str]
    ) -> list[tuple[str, Any, str]]:
        from cnnlab.tasks.views import captioned_grid, grey_rgb  # matplotlib: only for reports

        n = min(12, len(inputs))
        thresholds = torch.as_tensor(self.thresholds, dtype=scores.dtype)
        captions = []
        for i in range(n):
            pred = [classes[k] for k in torch.nonzero(scores[i] >= thresholds).flatten().tolist()]
            true = [classes[k] for k in torch.nonzero(targets["labels"][i]).flatten().tolist()]
            captions.append(f"pred: {', '.join(pred) or '-'}\ntrue: {', '.join(true) or '-'}")
        grid = captioned_grid([grey_rgb(inputs[i]) for i in range(n)], captions)
        return [("Predicted labels", grid, f"the first {n} test inputs: predicted and true labels")]
