"""Optimizers and schedules by name, checked against closed-form learning rates."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.core.errors import ConfigError, UnknownNameError
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.optim import OPTIMIZERS, Schedule, build_optimizer


def lrs(
    config: TrainConfig, steps_per_epoch: int, losses: list[float] | None = None
) -> list[float]:
    """The learning rate used at each batch (and, for plateau, each epoch)."""
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    schedule = Schedule(opt, config, steps_per_epoch)
    seen = []
    for epoch in range(config.epochs):
        for _ in range(steps_per_epoch):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.after_batch()
        schedule.after_epoch(losses[epoch] if losses else 1.0)
    return seen


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_minimises_a_quadratic(name: str) -> None:
    config = TrainConfig(optimizer=name, lr=0.05, weight_decay=0.0)
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = build_optimizer([w], config)
    for _ in range(200):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert w.norm() < 0.5


def test_sgd_settings_reach_torch() -> None:
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainConfig(momentum=0.8))
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert group["momentum"] == 0.8 and group["nesterov"] and group["weight_decay"] == 5e-4
    # Nesterov needs momentum; with momentum 0 it is dropped rather than refused.
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainConfig(momentum=0.0))
    assert not opt.param_groups[0]["nesterov"]


def test_step_schedule() -> None:
    seen = lrs(TrainConfig(schedule="step", lr=1.0, epochs=4, step_epochs=2, gamma=0.5), 3)
    assert seen == pytest.approx([1.0] * 6 + [0.5] * 6)


def test_linear_warmup_then_cosine() -> None:
    config = TrainConfig(schedule="cosine", lr=1.0, epochs=5, warmup_epochs=1)
    seen = lrs(config, 10)
    assert seen[0] == pytest.approx(0.01)
    assert seen[5] == pytest.approx(0.01 + 0.99 * 5 / 10)  # linear ramp
    assert seen[10] == pytest.approx(1.0)  # warm-up over: cosine starts at the peak
    t = 20 - 10  # 10 steps into the 40-step cosine
    assert seen[20] == pytest.approx(0.5 * (1 + math.cos(math.pi * t / 40)))


def test_onecycle_peaks_at_a_quarter_and_ends_near_zero() -> None:
    seen = lrs(TrainConfig(schedule="onecycle", lr=0.4, epochs=4), 25)
    assert max(seen) == pytest.approx(0.4)
    assert seen.index(max(seen)) == pytest.approx(25, abs=1)
    assert seen[-1] < 0.4 / 1000


def test_plateau_decays_after_patience() -> None:
    config = TrainConfig(schedule="plateau", lr=1.0, epochs=5, plateau_patience=1, gamma=0.1)
    seen = lrs(config, 1, losses=[1.0, 1.0, 1.0, 0.5, 0.5])
    assert seen == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1])


def test_unknown_names_and_bad_values() -> None:
    with pytest.raises(UnknownNameError, match="unknown optimizer 'lbfgs'"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainConfig(optimizer="lbfgs"))
    with pytest.raises(UnknownNameError, match="unknown schedule 'exp'"):
        Schedule(
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]), TrainConfig(schedule="exp"), 1
        )
    with pytest.raises(ConfigError, match="received epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="received lr='fast'"):
        TrainConfig(lr="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown config keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_onecycle_runs_of_a_few_steps_do_not_divide_by_zero(steps: int) -> None:
    model = torch.nn.Linear(2, 1)
    config = TrainConfig(schedule="onecycle", lr=0.1, epochs=1)
    optimizer = build_optimizer(model.parameters(), config)
    schedule = Schedule(optimizer, config, steps)
    for _ in range(steps):
        optimizer.step()
        schedule.after_batch()
    assert 0 <= optimizer.param_groups[0]["lr"] <= 0.1
