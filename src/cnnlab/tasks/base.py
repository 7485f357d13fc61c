"""The Task contract: what the one training loop asks of every kind of prediction.

The trainer, the evaluator, the autotuner and `cnnlab bench` know nothing about classes,
masks or keypoints. They hand a task the model's outputs and a dict of targets and get
back a loss dict (key ``loss`` is the total), stateful metrics, test-time-augmented
outputs and, for people, predictions to show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from torch import Tensor, nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError, UnknownNameError

Targets = dict[str, Tensor]


class Metrics(Protocol):
    """Stateful metrics: ``update`` per batch, ``compute`` at the end."""

    def update(self, outputs: Tensor, targets: Targets) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task:
    """Base class of the tasks; subclasses set the class attributes and the methods.

    Attributes:
        name: the ``--task`` name.
        targets: target keys a dataset must provide, e.g. ("label",) or ("mask",).
        metric: the headline metric (a key of ``metrics().compute()``).
        ensemble_combine: how an Ensemble averages members' outputs for this task
            (cnnlab.models.ensemble.COMBINE_RULES).
        model_task: the registry's ``task`` of the models it trains.
    """

    name: ClassVar[str]
    targets: ClassVar[tuple[str, ...]]
    metric: ClassVar[str]
    ensemble_combine: ClassVar[str] = "softmax"
    model_task: ClassVar[str] = "classify"

    def __init__(self, **options: Any) -> None:
        self.options = options

    # -- data and model checks, before any training ---------------------------------------

    def bind(self, model: nn.Module) -> None:
        """Learn what the task must know of the model it trains or runs (a detector's
        priors); most tasks need nothing."""

    def check_data(self, data: Any) -> None:
        """Raise ConfigError naming the dataset, the field, what was received and expected."""
        for split, targets in (("train", data.targets_train), ("test", data.targets_test)):
            missing = [key for key in self.targets if key not in targets]
            if missing:
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) has targets {sorted(targets)}, but task "
                    f"{self.name!r} needs {list(self.targets)}; missing {missing}"
                )

    def expected_output(self, data: Any, batch: int) -> tuple[int, ...]:
        """The output shape a model must produce for ``batch`` inputs of ``data``."""
        raise NotImplementedError

    def check_outputs(self, outputs: Tensor, data: Any) -> None:
        """Raise ShapeMismatchError when the model's outputs do not fit the data."""
        expected = self.expected_output(data, len(outputs))
        if tuple(outputs.shape) != expected:
            raise ShapeMismatchError(
                f"the model outputs {tuple(outputs.shape)} for {len(outputs)} inputs of dataset "
                f"{data.name!r}, but task {self.name!r} needs {expected}; "
                f"{self.output_hint(data)}"
            )

    def class_names(self, data: Any) -> list[str]:
        """The names of the model's outputs for this task (what a saved model records)."""
        return list(data.classes)

    def model_args(self, data: Any) -> dict[str, Any]:
        """The arguments that size a model for ``data`` (``num_classes`` = its outputs)."""
        return {"num_classes": len(self.class_names(data))}

    def record_args(self, data: Any) -> dict[str, Any]:
        """What a saved model must remember to predict as trained (ModelRecord.task_args)."""
        return {}

    def output_hint(self, data: Any) -> str:
        return "build the model for this dataset"

    # -- training -----------------------------------------------------------------------

    def loss(self, outputs: Tensor, targets: Targets) -> dict[str, Tensor]:
        """The training loss dict: ``loss`` is the total the optimizer minimises."""
        raise NotImplementedError

    def training_loss(
        self, model: nn.Module, outputs: Tensor, targets: Targets
    ) -> dict[str, Tensor]:
        """``loss`` plus the model's own auxiliary loss when it has one (GoogLeNet)."""
        losses = self.loss(outputs, targets)
        auxiliary: Callable[..., Tensor] | None = getattr(model, "auxiliary_loss", None)
        if auxiliary is not None:
            losses["auxiliary"] = auxiliary(self.auxiliary_criterion, targets[self.targets[0]])
            losses["loss"] = losses["loss"] + losses["auxiliary"]
        return losses

    def auxiliary_criterion(self, outputs: Tensor, target: Tensor) -> Tensor:
        """The loss a model's side heads use (classification only)."""
        raise ConfigError(f"task {self.name!r} does not train auxiliary classifiers")

    def metrics(self) -> Metrics:
        """A fresh, empty set of metrics."""
        raise NotImplementedError

    def train_metrics(self) -> Metrics:
        """The metrics kept on the training batches as they pass (the epoch's line)."""
        return self.metrics()

    # -- evaluation -----------------------------------------------------------------------

    def eval_outputs(self, model: nn.Module, x: Tensor, tta: Any) -> Tensor:
        """float32 outputs for evaluation, averaged over the task's test-time views."""
        return model(x).float()

    def eval_loss(self, outputs: Tensor, targets: Targets) -> Tensor:
        """Summed (not averaged) loss over the batch, without training-only terms."""
        raise NotImplementedError

    def report_sections(
        self, inputs: Tensor, scores: Tensor, targets: Targets, classes: list[str]
    ) -> list[tuple[str, Any, str]]:
        """(title, uint8 RGB picture (H, W, 3) as a NumPy array, caption) per section."""
        return []

    def summarise(
        self, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> list[tuple[str, str]]:
        """What `cnnlab predict` prints for one input: (what, value) lines."""
        return []

    def pictures(
        self, image: Tensor, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> dict[str, Any]:
        """What `cnnlab predict --output DIR` writes for one input: name -> uint8 array,
        at the input file's own ``size`` (H, W)."""
        return {}

    def records(self, scores: Tensor, size: tuple[int, int], image_id: int) -> list[dict[str, Any]]:
        """Machine-readable results for one input at the file's ``size`` (detection: COCO
        result rows); most tasks have none beyond `summarise`."""
        return []

    def scores(self, outputs: Tensor) -> Tensor:
        """What a person reads: probabilities, pixel classes, coordinates."""
        return outputs


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available to get_task under ``cls.name``."""
    if cls.name in _TASKS:
        raise ConfigError(f"task name {cls.name!r} is already registered")
    _TASKS[cls.name] = cls
    return cls


def get_task(name: str, **options: Any) -> Task:
    """The task called ``name``, built with ``options`` (e.g. label_smoothing=0.1)."""
    if name not in _TASKS:
        raise UnknownNameError("task", name, sorted(_TASKS))
    return _TASKS[name](**options)


def list_tasks() -> list[str]:
    return sorted(_TASKS)


class NoMetrics:
    """Metrics that keep nothing: for training batches whose scoring would cost more than
    the step (a detector's NMS on every image of every batch)."""

    def update(self, outputs: Tensor, targets: Targets) -> None:
        return None

    def compute(self) -> dict[str, float]:
        return {}


def count(targets: Targets) -> int:
    """Samples in a batch of targets."""
    return len(next(iter(targets.values())))


def as_targets(targets: Tensor | Targets, key: str = "label") -> Targets:
    """A dict of targets from a dict or a bare label tensor."""
    return dict(targets) if isinstance(targets, dict) else {key: targets}
