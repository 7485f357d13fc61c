"""Optimizers and learning-rate schedules by name, from a TrainConfig."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import lr_scheduler

from cnnlab.core.errors import UnknownNameError
from cnnlab.engine.config import TrainConfig

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "plateau", "cyclic")


def build_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], config: TrainConfig
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), RMSprop, Adam or AdamW with the config's lr and decay.

    ``params`` may be parameter groups with their own ``lr`` (discriminative learning
    rates, cnnlab.transfer.param_groups)."""
    name, lr, wd = config.optimizer, config.lr, config.weight_decay
    if name == "sgd":
        nesterov = config.nesterov and config.momentum > 0  # torch refuses Nesterov at 0
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, nesterov=nesterov, weight_decay=wd
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise UnknownNameError("optimizer", name, OPTIMIZERS)


class Schedule:
    """A torch scheduler plus when to step it: after every batch, or per epoch on a metric.

    Every schedule but ``plateau`` steps per batch, so warm-up and decay are smooth
    and resuming mid-run only needs the scheduler's own state.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        steps_per_epoch: int,
        total_steps: int | None = None,
    ):
        """``total_steps`` (a time budget's plan) replaces ``config.epochs * steps_per_epoch``."""
        total = max(1, total_steps or config.epochs * steps_per_epoch)
        warmup = min(total - 1, round(config.warmup_epochs * steps_per_epoch))
        self.per_batch = config.schedule != "plateau"
        self.scheduler: lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau
        name = config.schedule
        if name == "onecycle":
            # torch divides by zero when the warm-up phase ends on step 0 (runs of a few
            # steps): the warm-up then takes at least 1.5 steps, and a run at least 2.
            steps = max(total, 2)
            # Each group peaks at its own rate (discriminative lrs): the rate it was built
            # with, or the peak an earlier schedule over it recorded (a re-laid plan).
            peaks = [g.get("max_lr", g["lr"]) for g in optimizer.param_groups]
            self.scheduler = lr_scheduler.OneCycleLR(
                optimizer, max_lr=peaks, total_steps=steps, pct_start=max(0.25, 1.5 / steps)
            )
            return
        if name == "plateau":
            self.scheduler = lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=config.gamma, patience=config.plateau_patience
            )
            return
        main: lr_scheduler.LRScheduler
        if name == "constant":
            main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        elif name == "step":
            main = lr_scheduler.StepLR(
                optimizer, step_size=config.step_epochs * steps_per_epoch, gamma=config.gamma
            )
        elif name == "cosine":
            main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup)
        elif name == "cyclic":  # cosine with restarts: snapshot ensembles (Huang et al. 2017)
            cycle = max(1, (total - warmup) // config.cycles)
            main = lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=cycle)
        else:
            raise UnknownNameError("schedule", name, SCHEDULES)
        if warmup > 0:
            ramp = lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
            self.scheduler = lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
        else:
            self.scheduler = main

    def fast_forward(self, steps: int) -> None:
        """Step a new schedule to where the run is (a time budget planned again)."""
        with warnings.catch_warnings():  # stepping without optimizer steps is the point here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for _ in range(steps):
                self.after_batch()

    def after_batch(self) -> None:
        if not isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()

    def after_epoch(self, monitored_loss: float) -> None:
        if isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored_loss)
