"""Predictions from a saved model: image files in, a top-k table of class probabilities out."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from cnnlab.core.errors import CheckpointError
from cnnlab.core.io import atomic_write_bytes, write_json
from cnnlab.core.records import record_of
from cnnlab.data.loader import Normalize
from cnnlab.engine import evaluator, inputs
from cnnlab.engine.evaluator import EvalSettings
from cnnlab.models.saved import load
from cnnlab.tasks import Task, as_targets, get_task
from cnnlab.tasks.base import Targets

DETECTIONS_FILE = "detections.json"  # predict --output: every file's boxes, COCO results


@dataclass
class Prediction:
    """Top-k guesses for one file, or the reason it could not be read."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class name, probability)
    error: str | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)  # other tasks: (what, value)
    files: list[str] = field(default_factory=list)  # pictures written (masks, overlays)
    detections: list[dict[str, Any]] = field(default_factory=list)  # detect: COCO results


def task_of(model: nn.Module) -> Task:
    """The task a saved (or trained) model was built for, with its recorded settings."""
    record = record_of(model)
    task = get_task("classify") if record is None else get_task(record.task, **record.task_args)
    task.bind(model)
    return task


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
    model_dir: str | os.PathLike[str],
    paths: Sequence[str],
    top_k: int = 3,
    output: str | os.PathLike[str] | None = None,
    backend: str = "torch",
) -> list[Prediction]:
    """Predictions for each file; unreadable files get an ``error`` and are skipped.

    ``backend="onnx"`` runs ``model_dir/model.onnx`` (written by ``cnnlab export``) with
    onnxruntime instead of the PyTorch model: one forward pass, no test-time augmentation.

    A classifier gives its top-k classes. Other tasks give what their task shows
    (multi-label: the labels over their thresholds; segmentation: the share of each
    class; keypoints: coordinates) and, with ``output``, write pictures there: a mask
    PNG and an overlay at the file's own size, or the image with its keypoints. Images
    are resized to the model's input and the results mapped back to the file's size.
    """
    model = load(model_dir)
    record = record_of(model)
    shape = record.input_shape if record else None
    classes = record.classes if record else None
    if not shape or not classes:
        raise CheckpointError(f"{model_dir}: config.json lacks input_shape or classes")
    task = task_of(model)
    if record is not None and record.preprocess:
        return _predict_prepared(model, task, record.preprocess, paths, classes, top_k)
    results = [Prediction(str(p)) for p in paths]
    images, sizes, ok = [], [], []
    for result in results:
        try:
            images.append(read_image(result.path, shape))
            sizes.append(image_size(result.path))
            ok.append(result)
        except FileNotFoundError:
            result.error = "file not found"
        except (OSError, ValueError) as e:
            result.error = str(e)
    if not images:
        return results
    batch = torch.stack(images)
    if backend == "onnx":
        from cnnlab.engine.export import OnnxRunner, default_path

        scores = task.scores(OnnxRunner(default_path(model_dir, "onnx"))(batch).float())
    else:
        scores = probabilities(model, batch)
    image_ids = {id(r): position for position, r in enumerate(results, start=1)}
    for i, result in enumerate(ok):
        _predict_one(task, result, batch[i], scores[i], classes, sizes[i], top_k, output)
        # Detection: COCO result rows; image_id = the file's position among the paths.
        result.detections = task.records(scores[i], sizes[i], image_ids[id(result)])
    if output is not None and task.name == "detect":
        rows = [{**row, "file_name": r.path} for r in results for row in r.detections]
        write_json(Path(output) / DETECTIONS_FILE, rows)
    return results


def _predict_prepared(
    model: nn.Module, task: Task, preprocess: dict[str, Any], items: Sequence[str],
    classes: list[str], top_k: int,
) -> list[Prediction]:  # fmt: skip
    """Sentences, WAV files or recordings (cnnlab.engine.inputs): a recording's windows
    are scored one by one and their probabilities averaged (the window count is shown)."""
    results: list[Prediction] = []
    for item in items:
        try:
            prepared = inputs.prepare(item, preprocess)
        except FileNotFoundError:
            results.append(Prediction(item, error="file not found"))
            continue
        except (OSError, ValueError) as e:  # DataFormatError is a ValueError
            results.append(Prediction(item, error=str(e)))
            continue
        for name, x in prepared:
            scores = probabilities(model, x).mean(0)
            result = Prediction(name)
            size = (1, int(x.shape[-1]))
            _predict_one(task, result, x[0], scores, classes, size, top_k, None)
            if len(x) > 1:
                result.lines.append(("windows averaged", str(len(x))))
            results.append(result)
    return results


def _predict_one(
    task: Task, result: Prediction, image: torch.Tensor, scores: torch.Tensor,
    classes: list[str], size: tuple[int, int], top_k: int,
    output: str | os.PathLike[str] | None,
) -> None:  # fmt: skip
    """Fill ``result`` with what the task shows for one image; write its pictures."""
    if task.name == "classify":
        values, indices = scores.topk(min(top_k, len(classes)))
        result.top = [
            (classes[k], v) for v, k in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        return
    result.lines = task.summarise(scores, classes, size)
    if output is not None:
        result.files = _write_pictures(task, image, scores, classes, size, result.path, output)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of an image file as stored."""
    with Image.open(path) as raw:
        return raw.height, raw.width


def _write_pictures(
    task: Task, image: torch.Tensor, scores: torch.Tensor, classes: list[str],
    size: tuple[int, int], path: str, output: str | os.PathLike[str],
) -> list[str]:  # fmt: skip
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, picture in task.pictures(image, scores, classes, size).items():
        target = folder / f"{Path(path).stem}.{suffix}.png"
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        atomic_write_bytes(target, buffer.getvalue())
        written.append(str(target))
    return written


def format_topk(results: Sequence[Prediction]) -> str:
    """The seed-001 style table: each file, then its top guesses with probabilities
    (or, for other tasks, what the task reports and the pictures written)."""
    lines = []
    for r in results:
        lines.append(r.path)
        if r.error:
            lines.append(f"  (skipped: {r.error})")
        width = max((len(name) for name, _ in [*r.top, *r.lines]), default=0)
        lines.extend(f"  {name:<{width}}  {p:.2f}" for name, p in r.top)
        lines.extend(f"  {name:<{width}}  {value}" for name, value in r.lines)
        lines.extend(f"  wrote {file}" for file in r.files)
    return "\n".join(lines)
