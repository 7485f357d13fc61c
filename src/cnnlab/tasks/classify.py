"""Classification: one label per input, cross-entropy with label smoothing, accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.tasks.base import Targets, Task, register_task
from cnnlab.tasks.tta import tta_log_probs


class Accuracy:
    """Top-1 accuracy, accumulated as integer counts (exact over any number of batches)."""

    def __init__(self) -> None:
        self.correct = torch.zeros((), dtype=torch.int64)
        self.seen = 0

    def update(self, outputs: Tensor, targets: Targets) -> None:
        label = targets["label"]
        self.correct += (outputs.detach().argmax(1) == label).sum()
        self.seen += len(label)

    def compute(self) -> dict[str, float]:
        return {"accuracy": self.correct.item() / max(self.seen, 1)}


@register_task
class Classify(Task):
    """Single-label classification of images, signals or token sequences.

    Options:
        label_smoothing: the training loss' label smoothing (the test loss has none).
    """

    name = "classify"
    targets = ("label",)
    metric = "accuracy"
    ensemble_combine = "softmax"

    def __init__(self, label_smoothing: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def check_data(self, data: Any) -> None:
        super().check_data(data)
        k = data.num_classes
        for split, targets in (("train", data.targets_train), ("test", data.targets_test)):
            label = targets["label"]
            if label.dim() != 1 or label.dtype != torch.int64:
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'label': expected int64 class ids "
                    f"shaped (N,), received dtype={label.dtype} shape={tuple(label.shape)}"
                )
            if len(label) and (int(label.min()) < 0 or int(label.max()) >= k):
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'label': expected class ids in "
                    f"[0, {k}), received values in [{int(label.min())}, {int(label.max())}]"
                )

    def expected_output(self, data: Any, batch: int) -> tuple[int, ...]:
        return (batch, data.num_classes)

    def check_outputs(self, outputs: Tensor, data: Any) -> None:
        if tuple(outputs.shape) != self.expected_output(data, len(outputs)):
            k = data.num_classes
            raise ShapeMismatchError(
                f"the model outputs {tuple(outputs.shape[1:])} per image but dataset "
                f"{data.name!r} has {k} classes; build it with num_classes={k}"
            )

    def loss(self, outputs: Tensor, targets: Targets) -> dict[str, Tensor]:
        return {"loss": self.criterion(outputs, targets["label"])}

    def auxiliary_criterion(self, outputs: Tensor, target: Tensor) -> Tensor:
        return self.criterion(outputs, target)

    def metrics(self) -> Accuracy:
        return Accuracy()

    def eval_outputs(self, model: nn.Module, x: Tensor, tta: Any) -> Tensor:
        """Log of the mean softmax over the test-time views (cnnlab.tasks.tta)."""
        return tta_log_probs(model, x, tta)

    def eval_loss(self, outputs: Tensor, targets: Targets) -> Tensor:
        return F.cross_entropy(outputs, targets["label"], reduction="sum")

    def scores(self, outputs: Tensor) -> Tensor:
        """Class probabilities."""
        return outputs.softmax(1)
