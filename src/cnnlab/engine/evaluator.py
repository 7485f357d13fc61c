"""The one evaluator: a model, a task and data in; the loss and the task's metrics out.

The trainer (validation and test), saved-model evaluation (`cnnlab evaluate`, ensembles)
and prediction all run through here, so the test loss has one formula.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.core.cpu import bf16_autocast
from cnnlab.data.loader import BatchLoader, Normalize
from cnnlab.tasks.base import Targets, Task, count


@dataclass
class EvalSettings:
    """How to run a model for evaluation: as its training run did."""

    normalize: Normalize
    batch_size: int = 1000
    tta: Any = False
    bf16: bool = False
    channels_last: bool = False
    limit_batches: int | None = None


def batches(
    model: nn.Module,
    task: Task,
    inputs: Tensor,
    targets: Targets,
    settings: EvalSettings,
    weights: contextlib.AbstractContextManager[Any] | None = None,
) -> Iterator[tuple[Tensor, Targets]]:
    """Batches of float32 evaluation outputs (with the task's TTA) and their targets.

    ``weights`` is entered around the loop (e.g. an EMA swap); the model's train/eval
    mode is restored afterwards.
    """
    loader = BatchLoader(
        inputs, targets, settings.batch_size, settings.normalize,
        limit_batches=settings.limit_batches, channels_last=settings.channels_last,
    )  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), weights or contextlib.nullcontext():
            for x, t in loader:
                with bf16_autocast(settings.bf16):
                    outputs = task.eval_outputs(model, x, settings.tta)
                yield outputs.float(), t
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    task: Task,
    inputs: Tensor,
    targets: Targets,
    settings: EvalSettings,
    weights: contextlib.AbstractContextManager[Any] | None = None,
) -> dict[str, float]:
    """Mean test loss (no training-only terms), the task's metrics and ``n``."""
    metrics = task.metrics()
    loss_sum, seen = 0.0, 0
    for outputs, t in batches(model, task, inputs, targets, settings, weights):
        loss_sum += float(task.eval_loss(outputs, t))
        metrics.update(outputs, t)
        seen += count(t)
    return {"loss": loss_sum / max(seen, 1), **metrics.compute(), "n": seen}


def outputs(
    model: nn.Module,
    task: Task,
    inputs: Tensor,
    settings: EvalSettings,
    weights: contextlib.AbstractContextManager[Any] | None = None,
) -> Tensor:
    """All evaluation outputs for ``inputs``, concatenated (N, ...)."""
    dummy = {"index": torch.arange(len(inputs))}
    found = [out for out, _ in batches(model, task, inputs, dummy, settings, weights)]
    return torch.cat(found) if found else torch.empty(0)
