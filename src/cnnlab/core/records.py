"""ModelRecord: one typed record of what a model is, set by create_model, kept by save/load.

A record travels with the module as ``model.cnnlab_record``. ``create_model`` starts it
(architecture and arguments); the trainer fills in what training decides (task, input
shape, classes, normalisation, test-time augmentation, task settings such as
multi-label thresholds); ``cnnlab.save`` writes it as ``config.json`` and ``cnnlab.load``
reads it back. Export and serving use it to preprocess exactly as training did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cnnlab.core import __version__
from cnnlab.core.errors import ConfigError

ATTRIBUTE = "cnnlab_record"


@dataclass
class ModelRecord:
    """What a model is and how its inputs were prepared in training."""

    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    task: str = "classify"
    input_shape: list[int] | None = None  # (C, H, W) of one image, (C, L) of a signal
    classes: list[str] | None = None
    mean: list[float] | None = None  # per-channel normalisation on the 0..1 scale
    std: list[float] | None = None
    tta: bool | str | None = None  # the test-time augmentation the model was scored with
    frozen: list[str] = field(default_factory=list)  # parameters with requires_grad off
    dataset: str | None = None
    dataset_args: dict[str, Any] = field(default_factory=dict)
    # What the task needs to predict as trained: multi-label thresholds, keypoint flip
    # index, segmentation ignore index, ...
    task_args: dict[str, Any] = field(default_factory=dict)
    # How a raw input (text, WAV, recording) becomes the model's input: the dataset's
    # ``preprocess`` (cnnlab.data.dataset); empty for images, which read_image prepares.
    preprocess: dict[str, Any] = field(default_factory=dict)
    cnnlab_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)  # keys of other writers, kept as is

    def to_dict(self) -> dict[str, Any]:
        """The config.json mapping: the fields (empty ones left out), then ``extra``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if f.name in ("frozen", "task_args", "dataset_args", "preprocess") and not value:
                continue
            out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelRecord:
        """The record a config.json mapping holds; unknown keys go to ``extra``."""
        if not isinstance(values, dict) or not isinstance(values.get("architecture"), str):
            raise ConfigError(
                f"Expected a model record with an 'architecture' name, received {values!r:.200}"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known and v is not None}
        extra = {k: v for k, v in values.items() if k not in known}
        return cls(**kwargs, extra=extra)

    def copy(self, **changes: Any) -> ModelRecord:
        """A deep-enough copy with ``changes`` applied (lists and dicts are not shared)."""
        return ModelRecord.from_dict({**self.to_dict(), **changes})


def record_of(model: Any) -> ModelRecord | None:
    """The record ``model`` carries, or None (a module not built by create_model/load)."""
    record = getattr(model, ATTRIBUTE, None)
    return record if isinstance(record, ModelRecord) else None


def require_record(model: Any) -> ModelRecord:
    """The record ``model`` carries; ConfigError when it has none."""
    record = record_of(model)
    if record is None:
        raise ConfigError(
            f"{type(model).__name__} was not built by cnnlab.create_model, so its config is "
            "unknown; build it with create_model(name, ...) to save it"
        )
    return record


def set_record(model: Any, record: ModelRecord) -> None:
    """Attach ``record`` to ``model`` (replacing any it had)."""
    object.__setattr__(model, ATTRIBUTE, record)
