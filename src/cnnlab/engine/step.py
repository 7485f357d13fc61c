"""The one training step: forward, task loss, backward, update — for every caller.

The trainer, the CPU autotuner and `cnnlab bench` all train through :class:`TrainStep`,
so what the tuner times and what `bench` measures is exactly what a run executes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cnnlab.core.cpu import bf16_autocast
from cnnlab.tasks.base import Targets, Task


class TrainStep:
    """Call with a batch ``(x, targets)``; returns the detached loss dict and outputs.

    Args:
        model: the module being trained (its parameters are what ``optimizer`` updates).
        task: turns outputs and targets into the loss dict.
        optimizer: any torch optimizer over the model's parameters.
        forward: what runs the forward pass (the model, or ``torch.compile(model)``).
        bf16: run forward and loss under bf16 autocast.
        grad_clip: max global gradient norm; None = off.
        after_update: called after every optimizer step (EMA, per-batch schedules).
        check_loss: called with the total loss before backward (the trainer stops on a
            non-finite loss there, before it can reach the weights).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        optimizer: torch.optim.Optimizer,
        *,
        forward: Callable[[Tensor], Tensor] | None = None,
        bf16: bool = False,
        grad_clip: float | None = None,
        after_update: Callable[[], None] | None = None,
        check_loss: Callable[[Tensor], None] | None = None,
    ) -> None:
        self.model, self.task, self.optimizer = model, task, optimizer
        self.forward = forward if forward is not None else model
        self.bf16, self.grad_clip, self.after_update = bf16, grad_clip, after_update
        self.check_loss = check_loss

    def __call__(self, x: Tensor, targets: Targets) -> tuple[dict[str, Tensor], Tensor]:
        # 1. Forward and the task's loss dict (the task adds any auxiliary loss).
        with bf16_autocast(self.bf16):
            outputs = self.forward(x)
            losses = self.task.training_loss(self.model, outputs, targets)
        if self.check_loss is not None:
            self.check_loss(losses["loss"])
        # 2. Backward.
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        # 3. Update.
        self.optimizer.step()
        if self.after_update is not None:
            self.after_update()
        return {k: v.detach() for k, v in losses.items()}, outputs.detach()
