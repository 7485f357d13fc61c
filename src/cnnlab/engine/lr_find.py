"""The learning-rate range test (Smith 2017, "Cyclical learning rates for training neural
networks", section 3.3): train with an exponentially rising rate and watch the loss.

The sweep stops early once a debiased exponential moving average of the loss (beta 0.9)
passes ``diverge`` times its best. For the suggestion the loss is smoothed by a centred
moving average (a twentieth of the sweep each side): an exponential average lags, and
at 100 steps over seven decades beta 0.98 would shift the curve by three decades. The
suggestion is the rate where the smoothed loss falls fastest per decade of rate (the steepest descent,
between the start of the curve and its minimum); the rate at the minimum divided by 10 is
reported beside it. The sweep uses an optimizer of its own; the model's weights, its
frozen flags and every random state are restored afterwards, so the test costs only time.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import Normalize
from cnnlab.engine import finetune
from cnnlab.engine.optim import build_optimizer
from cnnlab.engine.step import TrainStep

if TYPE_CHECKING:
    from cnnlab.engine.trainer import Trainer

BETA = 0.9  # the running average that detects divergence


@dataclass
class LRFindResult:
    """The sweep: rates tried, raw and smoothed losses, and the suggested rate."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float  # steepest descent of the smoothed loss
    min_over_10: float  # the rate at the smoothed minimum, / 10
    stopped_early: bool  # the loss diverged before the last rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed,
            "suggestion": self.suggestion, "min_over_10": self.min_over_10,
            "stopped_early": self.stopped_early, "rule": "steepest descent of the smoothed loss",
        }  # fmt: skip

    def plot(self, path: str | Path) -> Path:
        """The loss against the rate (log axis) with both suggestions marked, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="smoothed")
        ax.axvline(self.suggestion, color="C3", ls="--", label=f"steepest {self.suggestion:.2g}")
        ax.axvline(self.min_over_10, color="C2", ls=":", label=f"min/10 {self.min_over_10:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        low, high = min(self.losses), max(self.smoothed[0], min(self.losses) + 1e-6)
        ax.set_ylim(low - 0.05 * (high - low), high + 0.3 * (high - low))
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
        plt.close(fig)
        return out


def centred_average(values: list[float]) -> list[float]:
    """Each value replaced by the mean of its neighbourhood (len/20 each side, at least 1)."""
    h = max(1, len(values) // 20)
    v = np.asarray(values)
    return [float(v[max(0, i - h) : i + h + 1].mean()) for i in range(len(v))]


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(steepest-descent rate, rate at the minimum / 10) of a smoothed loss curve."""
    low = int(np.argmin(smoothed))
    start = min(len(smoothed) // 10, max(low - 1, 0))
    if low - start < 2:  # no descending stretch to measure: fall back to min / 10
        return lrs[low] / 10, lrs[low] / 10
    slope = np.gradient(np.asarray(smoothed[start : low + 1]), np.log(lrs[start : low + 1]))
    return lrs[start + int(np.argmin(slope))], lrs[low] / 10


def lr_find(
    trainer: Trainer,
    data: ImageDataset,
    *,
    start: float = 1e-6,
    end: float = 10.0,
    steps: int = 100,
    diverge: float = 4.0,
) -> LRFindResult:
    """Sweep the rate from ``start`` to ``end`` over ``steps`` batches of ``data``'s
    training split with ``trainer``'s model, task, optimizer kind and augmentation.

    Raises:
        ConfigError: a range that does not rise, or fewer than 5 steps.
    """
    if not 0 < start < end or steps < 5:
        raise ConfigError(
            f"Expected 0 < start < end and steps >= 5, received start={start}, end={end}, "
            f"steps={steps}"
        )
    model = trainer.model
    saved_model = copy.deepcopy(model.state_dict())
    saved_rng = (torch.get_rng_state(), trainer.generator.get_state())
    saved_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        return _sweep(trainer, data, start, end, steps, diverge)
    finally:  # the model, its frozen flags and every random state as they were
        model.load_state_dict(saved_model)
        for name, p in model.named_parameters():
            p.requires_grad_(saved_grad[name])
            p.grad = None
        torch.set_rng_state(saved_rng[0])
        trainer.generator.set_state(saved_rng[1])


def _sweep(
    trainer: Trainer, data: ImageDataset, start: float, end: float, steps: int, diverge: float
) -> LRFindResult:
    cfg, model = trainer.config, trainer.model
    trainer.task = trainer._resolve_task(data)
    trainer.normalize = Normalize(*data.channel_stats())
    finetune.apply_freezing(model, cfg, lambda _: None)
    optimizer = build_optimizer(finetune.parameters(model, cfg), cfg)
    ratios = [g["lr"] / cfg.lr if cfg.lr else 1.0 for g in optimizer.param_groups]
    step = TrainStep(model, trainer.task, optimizer, grad_clip=cfg.grad_clip)
    loader = trainer._loader(
        data.x_train, data.targets_train, data, torch.Generator().manual_seed(cfg.seed + 3)
    )
    rates = [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    model.train()
    batches = iter(loader)
    for i, lr in enumerate(rates):
        try:
            x, targets = next(batches)
        except StopIteration:  # a small data set: go round again
            batches = iter(loader)
            x, targets = next(batches)
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = lr * ratio
        loss = float(step(x, targets)[0]["loss"])
        if not math.isfinite(loss):
            stopped = True
            break
        avg = BETA * avg + (1 - BETA) * loss
        value = avg / (1 - BETA ** (i + 1))
        lrs.append(lr)
        losses.append(loss)
        best = min(best, value)
        if i > steps // 10 and value > diverge * best:
            stopped = True
            break
    if len(lrs) < 3:
        raise ConfigError(
            f"the loss diverged within {len(lrs) + 1} steps, at lr {rates[len(lrs)]:.3g}; "
            f"start lower than {start}"
        )
    smoothed = centred_average(losses)
    steepest, min_over_10 = suggest(lrs, smoothed)
    return LRFindResult(lrs, losses, smoothed, steepest, min_over_10, stopped)
