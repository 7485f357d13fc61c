"""The model registry: a name -> builder table that refuses duplicate names."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from cnnlab.core.errors import ConfigError, UnknownNameError
from cnnlab.core.records import ModelRecord, set_record

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it."""

    name: str
    builder: Callable[..., nn.Module]
    # (C, H, W) of an image, (C, L) of a signal, (L,) of token ids: what the model is built for
    input_shape: tuple[int, ...]
    paper: str  # short citation, e.g. "LeCun et al. 1998"
    year: int
    fixed_input: bool  # built for one image size: the builder takes ``input_size``
    # A small input that still runs every layer: what fast tests feed it (None: input_shape).
    test_input_shape: tuple[int, ...] | None = None
    # What the model predicts: "classify" (and "multilabel": same output shape),
    # "segment" (B, num_classes, H, W) or "keypoints" (B, 2 * num_keypoints).
    task: str = "classify"


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    paper: str,
    year: int,
    fixed_input: bool = False,
    test_input_shape: tuple[int, ...] | None = None,
    task: str = "classify",
) -> Callable[[Builder], Builder]:
    """Decorator that adds a builder to the registry under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(
            name, builder, input_shape, paper, year, fixed_input, test_input_shape, task
        )
        return builder

    return decorate


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; raises UnknownNameError listing valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("model", name, _REGISTRY) from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model, e.g. ``create_model("lenet5", num_classes=10)``.

    The name and arguments start the model's :class:`~cnnlab.core.records.ModelRecord`
    (``model.cnnlab_record``), so that :func:`cnnlab.save` can write a config that
    rebuilds the same model.
    """
    info = model_info(name)
    model = info.builder(**kwargs)
    args = json.loads(json.dumps(kwargs))  # tuples -> lists: what config.json will hold
    set_record(model, ModelRecord(architecture=name, model_args=args, task=info.task))
    return model


def list_models(pattern: str = "*", *, task: str | None = None) -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (and ``task``), sorted."""
    return sorted(
        n
        for n, info in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern) and (task is None or info.task == task)
    )
