"""Saved models: a folder with config.json (how to rebuild) and model.safetensors (weights).

Loading rebuilds the architecture from the registry and reads tensors only;
nothing is unpickled, so a saved model from a stranger cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnlab import __version__
from cnnlab.data.loader import Normalize, to_input
from cnnlab.errors import CheckpointError, ConfigError, UnknownNameError
from cnnlab.io import load_tensors, save_tensors, write_json
from cnnlab.models import build_model

if TYPE_CHECKING:
    from cnnlab.data.dataset import ImageDataset

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def config_of(model: nn.Module) -> dict[str, Any]:
    """The config a loaded (or create_model-built) model carries; {} for any other module."""
    record = getattr(model, "cnnlab_config", None)
    return dict(record) if isinstance(record, dict) else {}


def model_config(model: nn.Module) -> dict[str, Any]:
    """The {"architecture", "model_args"} record ``create_model`` attached to ``model``."""
    record = getattr(model, "cnnlab_config", None)
    if not isinstance(record, dict) or "architecture" not in record:
        raise ConfigError(
            f"{type(model).__name__} was not built by cnnlab.create_model, so its config is "
            "unknown; build it with create_model(name, ...) to save it"
        )
    return dict(record)


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    classes: list[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` to the folder ``path`` (created if needed); returns the folder.

    Weights are written before the config, each atomically, so a folder with a
    config always has complete weights beside it. Parameters with requires_grad off
    are listed in the config as "frozen" and come back frozen from :func:`load`.
    """
    folder = Path(path)
    frozen = frozen_names(model)
    config = {
        **model_config(model),
        "classes": classes,
        "input_shape": list(input_shape) if input_shape else None,
        "mean": mean,
        "std": std,
        "cnnlab_version": __version__,
        **(extra or {}),
    }
    if frozen:  # e.g. a whitened first layer: a loaded model keeps it frozen
        config["frozen"] = frozen
    state = model.state_dict()
    save_tensors(folder / WEIGHTS_FILE, state, {"format": "cnnlab.model/1"})
    write_json(folder / CONFIG_FILE, config)
    return folder


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json of a saved model folder, checked for the keys load() needs."""
    file = Path(path) / CONFIG_FILE
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{file}: not found; expected a saved cnnlab model folder") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: unreadable or not JSON ({e})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointError(f"{file}: expected an object with an 'architecture' key")
    return config


def load(path: str | os.PathLike[str]) -> nn.Module:
    """Rebuild a saved model in eval mode; its config is in ``model.cnnlab_config``.

    Raises:
        CheckpointError: missing/damaged files, or weights that do not fit the config.
    """
    config = read_config(path)
    try:
        model = build_model(config)
    except (UnknownNameError, TypeError, KeyError, ConfigError) as e:
        raise CheckpointError(
            f"{Path(path) / CONFIG_FILE}: cannot rebuild the model ({e})"
        ) from None
    tensors, _ = load_tensors(Path(path) / WEIGHTS_FILE)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise CheckpointError(
            f"{Path(path) / WEIGHTS_FILE}: weights do not fit {config['architecture']} "
            f"({str(e).splitlines()[0]})"
        ) from None
    try:
        freeze(model, config.get("frozen") or [])
    except KeyError as e:
        raise CheckpointError(
            f"{Path(path) / CONFIG_FILE}: 'frozen' lists a parameter the model lacks: {e}"
        ) from None
    model.cnnlab_config = config  # type: ignore[assignment]
    return model.eval()


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


def preprocess(images: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the normalised float input the saved model was trained on."""
    return to_input(images, Normalize(config.get("mean") or [0.0], config.get("std") or [1.0]))


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
