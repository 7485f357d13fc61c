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
        accumulate: micro-batches per batch: the batch is split into this many parts
            whose gradients add up (each part's loss weighted by its share of the batch)
            before one optimizer step; memory scales with the micro-batch.
        recover_oom: on an out-of-memory error (CUDA OOM or a CPU allocation failure),
            drop the step's gradients, halve the micro-batch (double ``accumulate``) and
            run the same batch again: the effective batch, the schedule and the loss
            scale are unchanged. At micro-batch 1 it gives up (OutOfMemoryAtOne).
        log: where recoveries are reported.

    Accumulation is exact for losses that are a mean over items (cross-entropy, MSE);
    losses normalised per batch (detection's by its positives) and BatchNorm's batch
    statistics see the micro-batch instead.
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
        accumulate: int = 1,
        recover_oom: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.model, self.task, self.optimizer = model, task, optimizer
        self.forward = forward if forward is not None else model
        self.bf16, self.grad_clip, self.after_update = bf16, grad_clip, after_update
        self.check_loss = check_loss
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ValueError(f"Expected accumulate to be an int >= 1, received {accumulate!r}")
        self.accumulate, self.recover_oom, self.log = accumulate, recover_oom, log
        self.recoveries: list[dict[str, int]] = []  # one row per halving

    def __call__(self, x: Tensor, targets: Targets) -> tuple[dict[str, Tensor], Tensor]:
        while True:
            try:
                return self._step(x, targets)
            except Exception as e:
                if not (self.recover_oom and is_out_of_memory(e)):
                    raise
                self.optimizer.zero_grad(set_to_none=True)  # nothing of the failed try stays
                micro = -(-len(x) // self.accumulate)
                if micro <= 1:
                    raise OutOfMemoryAtOne(
                        f"out of memory at micro-batch 1 (batch {len(x)}, accumulate "
                        f"{self.accumulate}): the model does not fit; use a smaller model, "
                        f"input size or fewer threads ({str(e).splitlines()[0][:200]})"
                    ) from None
                before = self.accumulate
                self.accumulate = min(2 * self.accumulate, len(x))
                self.recoveries.append({"from": before, "to": self.accumulate, "batch": len(x)})
                self.log(
                    f"out of memory: micro-batch {micro} -> {-(-len(x) // self.accumulate)}, "
                    f"accumulate {before} -> {self.accumulate} (batch {len(x)} per step "
                    "unchanged); the step runs again"
                )

    def _step(self, x: Tensor, targets: Targets) -> tuple[dict[str, Tensor], Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        parts = split(x, targets, self.accumulate)
        total: dict[str, Tensor] = {}
        outs = []
        for xp, tp in parts:
            # 1. Forward and the task's loss dict (the task adds any auxiliary loss).
            with bf16_autocast(self.bf16):
                outputs = self.forward(xp)
                losses = self.task.training_loss(self.model, outputs, tp)
            if self.check_loss is not None:
                self.check_loss(losses["loss"])
            # 2. Backward, each part weighted by its share of the batch.
            share = len(xp) / len(x)
            (losses["loss"] * share if len(parts) > 1 else losses["loss"]).backward()
            for k, v in losses.items():
                total[k] = total.get(k, 0) + v.detach() * share
            outs.append(outputs.detach())
        outputs = outs[0] if len(outs) == 1 else torch.cat(outs)
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        # 3. Update.
        self.optimizer.step()
        if self.after_update is not None:
            self.after_update()
        return total, outputs


class OutOfMemoryAtOne(RuntimeError):
    """Out of memory with one item per micro-batch: nothing left to halve."""


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA OOM or a CPU allocation failure (PyTorch raises RuntimeError for those)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError | MemoryError) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(error, MemoryError)
    )


def split(x: Tensor, targets: Targets, parts: int) -> list[tuple[Tensor, Targets]]:
    """The batch as ``parts`` micro-batches (sizes differ by at most one), targets alike."""
    if parts <= 1:
        return [(x, targets)]
    bounds = [len(r) for r in torch.arange(len(x)).tensor_split(min(parts, len(x)))]
    out, start = [], 0
    for size in bounds:
        end = start + size
        out.append((x[start:end], {k: v[start:end] for k, v in targets.items()}))
        start = end
    return out
