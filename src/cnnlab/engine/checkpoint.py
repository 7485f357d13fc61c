"""Training checkpoints: model, optimizer, schedule, RNG and loop state in one
safetensors file, written atomically. Nothing is unpickled on load."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from cnnlab.core.errors import CheckpointError
from cnnlab.core.io import load_tensors, save_tensors

FORMAT = "cnnlab.checkpoint/1"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor in a nested dict/list into ``tensors``; return JSON-able rest."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        # JSON keys are strings; remember int keys (optimizer state is keyed by param index).
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a checkpoint: {obj!r}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if "__float__" in obj:
        return float(obj["__float__"])
    return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write a nested dict of tensors and plain values (``state_dict()``s, RNG states, ...)."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "s", tensors)
    save_tensors(path, tensors, {"format": FORMAT, "structure": json.dumps(structure)})


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, truncated, tampered with, or not a cnnlab checkpoint.
    """
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{Path(path)}: expected format {FORMAT!r}, received {metadata.get('format')!r}"
        )
    try:
        state: dict[str, Any] = _unflatten(json.loads(metadata["structure"]), tensors)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{Path(path)}: damaged structure record ({e})") from None
    return state
