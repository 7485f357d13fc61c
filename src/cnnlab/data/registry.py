"""The dataset registry: one decorated loader per dataset, like models.

A loader takes ``(name, resolver, options)`` and returns an
:class:`~cnnlab.data.dataset.ImageDataset`; ``cnnlab.data.load`` checks the options
against the registered defaults, then calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnlab.core.errors import ConfigError, UnknownNameError

Loader = Callable[..., Any]


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about a dataset without loading it."""

    name: str
    loader: Loader
    options: dict[str, Any]  # accepted options with their defaults
    title: str
    origin: str  # URL or where the data comes from
    task: str = "classify"  # the task it trains by default
    # num_classes, input_shape, train_size, test_size when known without loading
    facts: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str,
    *,
    title: str,
    origin: str,
    options: dict[str, Any] | None = None,
    task: str = "classify",
    facts: dict[str, Any] | None = None,
) -> Callable[[Loader], Loader]:
    """Decorator that adds a loader to the registry under ``name``."""

    def decorate(loader: Loader) -> Loader:
        if name in _REGISTRY:
            raise ConfigError(f"dataset name {name!r} is already registered")
        _REGISTRY[name] = DatasetInfo(
            name, loader, dict(options or {}), title, origin, task, dict(facts or {})
        )
        return loader

    return decorate


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; raises UnknownNameError listing valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("dataset", name, _REGISTRY) from None


def registered_datasets(task: str | None = None) -> list[str]:
    """Registered names (of datasets whose default task is ``task``), sorted."""
    return sorted(n for n, info in _REGISTRY.items() if task is None or info.task == task)
