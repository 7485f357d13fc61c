"""Predictions from a saved model: image files in, a top-k table of class probabilities out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from cnnlab.core.errors import CheckpointError
from cnnlab.core.records import record_of
from cnnlab.data.loader import Normalize
from cnnlab.engine import evaluator
from cnnlab.engine.evaluator import EvalSettings
from cnnlab.models.saved import config_of, load
from cnnlab.tasks import Task, as_targets, get_task
from cnnlab.tasks.base import Targets


@dataclass
class Prediction:
    """Top-k guesses for one file, or the reason it could not be read."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class name, probability)
    error: str | None = None


def task_of(model: nn.Module) -> Task:
    """The task a saved (or trained) model was built for, with its recorded settings."""
    record = record_of(model)
    if record is None:
        return get_task("classify")
    return get_task(record.task, **record.task_args)


def settings_of(model: nn.Module, batch_size: int = 500) -> EvalSettings:
    """Evaluate a model as its training run did: its normalisation and its TTA."""
    record = record_of(model)
    mean = (record.mean if record else None) or [0.0]
    std = (record.std if record else None) or [1.0]
    return EvalSettings(Normalize(mean, std), batch_size, record.tta if record else None)


def probabilities(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The task's scores of a loaded model for uint8 images (N, C, H, W): class
    probabilities (N, K) for a classifier.

    A model trained with ``tta`` is evaluated as it was during training: the mean of
    the predictions over the same test-time views (cnnlab.tasks.tta).
    """
    task = task_of(model)
    return task.scores(evaluator.outputs(model, task, images, settings_of(model, batch_size)))


def evaluate_model(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor | Targets
) -> dict[str, float]:
    """The test loss and the task's metrics (accuracy for a classifier) of a loaded model."""
    task = task_of(model)
    return evaluator.evaluate(model, task, images, as_targets(labels), settings_of(model))


def read_image(path: str | os.PathLike[str], input_shape: Sequence[int]) -> torch.Tensor:
    """One image file -> uint8 tensor (C, H, W) in the model's channels and size.

    Raises:
        ValueError: the file is empty, truncated or not an image (message says which).
        OSError: the file cannot be opened.
    """
    c, h, w = input_shape
    if Path(path).stat().st_size == 0:
        raise ValueError("file is empty")
    try:
        with Image.open(path) as raw:
            raw.load()  # decode now, so truncation is caught here
            img = raw.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
    except UnidentifiedImageError:
        raise ValueError("not an image file Pillow can read") from None
    except OSError as e:
        raise ValueError(f"damaged image ({e})") from None
    array = np.asarray(img, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


def predict_files(
    model_dir: str | os.PathLike[str], paths: Sequence[str], top_k: int = 3
) -> list[Prediction]:
    """Top-k predictions for each file; unreadable files get an ``error`` and are skipped."""
    model = load(model_dir)
    config = config_of(model)
    shape, classes = config.get("input_shape"), config.get("classes")
    if not shape or not classes:
        raise CheckpointError(f"{model_dir}: config.json lacks input_shape or classes")
    results = [Prediction(str(p)) for p in paths]
    images, ok = [], []
    for result in results:
        try:
            images.append(read_image(result.path, shape))
            ok.append(result)
        except FileNotFoundError:
            result.error = "file not found"
        except (OSError, ValueError) as e:
            result.error = str(e)
    if images:
        probs = probabilities(model, torch.stack(images))
        values, indices = probs.topk(min(top_k, len(classes)), dim=1)
        for result, vs, ix in zip(ok, values.tolist(), indices.tolist(), strict=True):
            result.top = [(classes[i], v) for v, i in zip(vs, ix, strict=True)]
    return results


def format_topk(results: Sequence[Prediction]) -> str:
    """The seed-001 style table: each file, then its top guesses with probabilities."""
    lines = []
    for r in results:
        lines.append(r.path)
        if r.error:
            lines.append(f"  (skipped: {r.error})")
        width = max((len(name) for name, _ in r.top), default=0)
        lines.extend(f"  {name:<{width}}  {p:.2f}" for name, p in r.top)
    return "\n".join(lines)
