"""Saved models: a folder with config.json (how to rebuild) and model.safetensors (weights).

Loading rebuilds the architecture from the registry and reads tensors only;
nothing is unpickled, so a saved model from a stranger cannot run code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnlab.core import __version__
from cnnlab.core.errors import CheckpointError, ConfigError, UnknownNameError
from cnnlab.core.io import load_tensors, save_tensors, write_json
from cnnlab.core.records import ModelRecord, record_of, require_record, set_record
from cnnlab.core.rundir import RunDir
from cnnlab.data.loader import Normalize, to_input
from cnnlab.models import build_model
from cnnlab.models.ensemble import ENSEMBLE

if TYPE_CHECKING:
    from cnnlab.data.dataset import ImageDataset


def config_of(model: nn.Module) -> dict[str, Any]:
    """The record a model carries as a config.json mapping; {} for any other module."""
    record = record_of(model)
    return record.to_dict() if record is not None else {}


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    classes: list[str] | None = None,
    input_shape: tuple[int, ...] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` to the folder ``path`` (created if needed); returns the folder.

    The config is the model's :class:`~cnnlab.core.records.ModelRecord`: a model that
    went through ``Trainer.fit`` already knows its classes, input shape, normalisation
    and task. Arguments given here override the record (and are kept in it). Weights are
    written before the config, each atomically, so a folder with a config always has
    complete weights beside it. Parameters with requires_grad off are listed as "frozen"
    and come back frozen from :func:`load`.
    """
    record = require_record(model)
    changes: dict[str, Any] = {"frozen": frozen_names(model), "cnnlab_version": __version__}
    given = {"classes": classes, "mean": mean, "std": std}
    changes |= {k: v for k, v in given.items() if v is not None}
    if input_shape is not None:
        changes["input_shape"] = list(input_shape)
    record = record.copy(**changes, **(extra or {}))
    set_record(model, record)
    files = RunDir.of(path)
    save_tensors(files.weights, model.state_dict(), {"format": "cnnlab.model/1"})
    write_json(files.model_config, record.to_dict())
    return files.root


def read_record(path: str | os.PathLike[str]) -> ModelRecord:
    """The ModelRecord in a saved model folder's config.json."""
    file = RunDir.of(path).model_config
    try:
        values = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{file}: not found; expected a saved cnnlab model folder") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: unreadable or not JSON ({e})") from None
    if not isinstance(values, dict) or "architecture" not in values:
        raise CheckpointError(f"{file}: expected an object with an 'architecture' key")
    try:
        return ModelRecord.from_dict(values)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{file}: not a model record ({e})") from None


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json mapping of a saved model folder, checked for what load() needs."""
    return read_record(path).to_dict()


def load(path: str | os.PathLike[str]) -> nn.Module:
    """Rebuild a saved model in eval mode; its record is ``model.cnnlab_record``.

    Raises:
        CheckpointError: missing/damaged files, or weights that do not fit the config.
    """
    files = RunDir.of(path)
    record = read_record(path)
    try:
        model = build_model(record.to_dict())
    except (UnknownNameError, TypeError, KeyError, ConfigError) as e:
        raise CheckpointError(f"{files.model_config}: cannot rebuild the model ({e})") from None
    tensors, _ = load_tensors(files.weights)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise CheckpointError(
            f"{files.weights}: weights do not fit {record.architecture} ({str(e).splitlines()[0]})"
        ) from None
    try:
        freeze(model, record.frozen)
    except KeyError as e:
        raise CheckpointError(
            f"{files.model_config}: 'frozen' lists a parameter the model lacks: {e}"
        ) from None
    set_record(model, record)
    _share_record(model, record)
    return model.eval()


def _share_record(model: nn.Module, record: ModelRecord) -> None:
    """Give a loaded ensemble's members the ensemble's record (normalisation, classes,
    input shape) with their own architecture, so each predicts on its own and
    ``Ensemble(loaded.members, combine=...)`` recombines them."""
    members = record.model_args.get("members") if record.architecture == ENSEMBLE else None
    if not isinstance(members, list):
        return
    for member, described in zip(model.members, members, strict=False):  # type: ignore[arg-type]
        set_record(
            member,
            record.copy(
                architecture=described["architecture"],
                model_args=described.get("model_args") or {}, frozen=[],
            ),
        )  # fmt: skip


def frozen_names(model: nn.Module) -> list[str]:
    """Names of ``model``'s parameters with requires_grad off, in parameter order."""
    return [name for name, p in model.named_parameters() if not p.requires_grad]


def freeze(model: nn.Module, names: list[str]) -> None:
    """Turn off requires_grad on the parameters ``names`` (KeyError names one it lacks)."""
    params = dict(model.named_parameters())
    for name in names:
        if name not in params:
            raise KeyError(name)
    for name in names:
        params[name].requires_grad_(False)


def preprocess(images: torch.Tensor, config: dict[str, Any] | ModelRecord) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the normalised float input the saved model was trained on;
    float signals (N, C, L) are normalised per channel; token ids pass unchanged."""
    if isinstance(config, ModelRecord):
        mean, std = config.mean, config.std
    else:
        mean, std = config.get("mean"), config.get("std")
    normalize = Normalize(mean or [0.0], std or [1.0])
    if images.dtype == torch.int64:
        return images
    if images.is_floating_point() and images.dim() == 3:
        return normalize.signal(images.float())
    return to_input(images, normalize)


def in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    stats: dict[str, Any] | ModelRecord,
    batch_size: int = 500,
    dim: int = 0,
) -> torch.Tensor:
    """``fn`` over dataset-format ``images`` a batch at a time, each batch prepared by
    :func:`preprocess` with ``stats``, without gradients; the results joined along ``dim``."""
    with torch.no_grad():
        out = [
            fn(preprocess(images[i : i + batch_size], stats))
            for i in range(0, len(images), batch_size)
        ]
    return torch.cat(out, dim=dim)


def dataset_of(model: nn.Module, name: str | None = None) -> tuple[str, ImageDataset]:
    """The dataset a loaded model was trained on (or ``name``), loaded: (name, data).

    Raises:
        ConfigError: the model does not record its dataset and no name was given.
    """
    from cnnlab import data as datasets

    config = config_of(model)
    chosen = name or config.get("dataset")
    if not chosen:
        raise ConfigError("the saved model does not record its dataset; pass --dataset NAME")
    args = (config.get("dataset_args") or {}) if chosen == config.get("dataset") else {}
    return chosen, datasets.load(chosen, **args)
