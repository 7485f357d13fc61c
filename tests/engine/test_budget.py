"""Time-budgeted training: durations, the plan's arithmetic, the watch, the trainer, resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cnnlab.app.cli import main
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import Callback, Trainer, budget
from cnnlab.engine.budget import BudgetPlan, BudgetWatch, parse_duration, plan_steps
from cnnlab.engine.config import TrainConfig
from cnnlab.runs.run import build_model


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(300, 300.0), (2.5, 2.5), ("300", 300.0), ("90s", 90.0), ("5m", 300.0), ("5min", 300.0),
     ("1.5h", 5400.0), ("1m30s", 90.0), (" 2 m ", 120.0), (None, None), ("none", None),
     ("off", None)],
)  # fmt: skip
def test_parse_duration(value: object, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "m5", "", "1x", -3, 0, True, [5]])
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ConfigError, match="time_budget"):
        parse_duration(value)
    with pytest.raises(ConfigError, match="time_budget"):
        TrainConfig(time_budget=value)


def test_plan_pays_for_evaluation_then_trains() -> None:
    # 100 s budget, 95 s planned; test 1,000 images at 10 ms = 10 s; validation 500
    # images (5 s) after each epoch of 100 steps at 0.1 s (10 s): epochs e satisfy
    # 10 e + 5 e + 10 <= 95 -> 5 full epochs (85 s), then 10 s buy 100 more steps? No:
    # validation after the 6th epoch costs 5 s too, so 5 s buy 50 steps.
    plan = plan_steps(
        100.0, step_seconds=0.1, eval_seconds_per_image=0.01, steps_per_epoch=100,
        val_images=500, test_images=1000,
    )  # fmt: skip
    assert (plan.total_steps, plan.epochs) == (550, 6)
    assert plan.eval_images == 1000 + 6 * 500
    spent = plan.total_steps * 0.1 + plan.eval_images * 0.01
    assert spent <= 95.0 + 1e-9 and spent + 0.1 > 95.0 - 0.1
    assert BudgetPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_plan_refuses_less_than_one_epoch() -> None:
    with pytest.raises(ConfigError, match=r"at least one epoch.*time_budget=10 s.*468 steps"):
        plan_steps(
            10.0, step_seconds=0.08, eval_seconds_per_image=0.001, steps_per_epoch=468,
            val_images=0, test_images=10000,
        )  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plan(**changes: object) -> BudgetPlan:
    values = dict(
        budget_seconds=100.0, step_seconds=0.1, eval_seconds_per_image=0.01,
        steps_per_epoch=100, total_steps=570, epochs=6, val_images=500, test_images=1000,
    )  # fmt: skip
    return BudgetPlan(**{**values, **changes})  # type: ignore[arg-type]


def test_watch_stops_at_the_plan_or_past_the_hard_limit() -> None:
    clock, said = FakeClock(), list[str]()
    watch = BudgetWatch(_plan(), said.append, clock=clock)
    assert not watch.should_stop(569)
    assert watch.should_stop(570) and not watch.stopped_early
    clock.now = 100.0 - 10.0  # with the 10 s test still to come: exactly on the budget
    assert not watch.should_stop(10)
    clock.now = 110.0 - 10.0 + 0.01  # past 110%
    assert watch.should_stop(10) and watch.stopped_early
    assert len(said) == 1 and "stopping at step 10 of 570" in said[0]
    used = watch.finish(10)
    assert used["stopped_early"] and used["steps"] == 10


def test_watch_warns_once_when_the_rate_drifts() -> None:
    clock, said = FakeClock(), list[str]()
    watch = BudgetWatch(_plan(), said.append, clock=clock)
    clock.now = 15.0  # epoch 1 as planned: 10 s of steps + 5 s of validation
    watch.after_epoch(100, 10.0, 100)
    assert said == []
    clock.now = 40.0  # epoch 2 took 2.5x longer
    watch.after_epoch(200, 25.0, 100)
    watch.after_epoch(300, 25.0, 100)
    assert len(said) == 1 and "0.250 s, 0.100 s when measured" in said[0]


def test_watch_plans_again_after_the_first_epoch() -> None:
    clock, said = FakeClock(), list[str]()
    watch = BudgetWatch(_plan(), said.append, clock=clock)
    clock.now = 13.0  # epoch 1: 8 s for 100 steps (0.08 s/step, not 0.1) + 5 s validation
    # 95 - 13 = 82 s left; 7 epochs in all: 6 more validations + the test = 40 s, so
    # 42 s / 0.08 = 525 more steps, which fill 6.25 epochs: 625.
    assert watch.replan(100) == 625
    assert (watch.plan.total_steps, watch.plan.epochs) == (625, 7)
    assert watch.plan.used["replanned_from"] == 570 and "not 0.100" in said[0]
    assert watch.replan(100) is None  # once per epoch start
    clock.now = 26.0  # epoch 2 at the same 0.08 s/step: the new plan holds
    assert watch.replan(200) is None and len(said) == 1
    clock.now = 43.0  # epoch 3 at 0.12 s/step: the median (0.08) still holds
    assert watch.replan(300) is None


def test_watch_keeps_a_plan_that_was_right_or_short() -> None:
    clock = FakeClock()
    watch = BudgetWatch(_plan(), print, clock=clock)
    clock.now = 15.2  # 2% off
    assert watch.replan(100) is None
    clock.now = 20.0
    single = BudgetWatch(_plan(total_steps=100, epochs=1), print, clock=clock)
    assert single.replan(100) is None  # nothing left to plan


def test_steps_that_fit_counts_validation_per_epoch() -> None:
    # The plan above: 6 epochs started, 570 steps.
    assert budget.steps_that_fit(97.0, 0.1, 0.01, 100, 500, 1000) == 570
    assert budget.steps_that_fit(97.0, 0.1, 0.01, 100, 0, 1000) == 870
    assert budget.steps_that_fit(5.0, 0.1, 0.01, 100, 0, 1000) == 0


def test_resumed_watch_counts_earlier_time() -> None:
    clock = FakeClock()
    watch = BudgetWatch(_plan(), print, already=42.0, clock=clock)
    assert watch.elapsed() == 42.0


# -- the trainer ---------------------------------------------------------------------------


def _fixed_rates(monkeypatch: pytest.MonkeyPatch, step: float = 0.1) -> list[int]:
    """Make the measurement deterministic; returns a list counting the measurements."""
    calls: list[int] = []

    def steps(*args: object, **kwargs: object) -> float:
        calls.append(1)
        return step

    monkeypatch.setattr(budget, "time_training_steps", steps)
    monkeypatch.setattr(budget, "time_evaluation", lambda *a, **k: 0.0)
    monkeypatch.setattr(budget, "REPLAN_TOLERANCE", float("inf"))  # keep the fake plan
    return calls


def _budget_config(config: TrainConfig, seconds: float) -> TrainConfig:
    return dataclasses.replace(config, time_budget=seconds, augment="flip", epochs=99)


def _fit(config: TrainConfig, data: ImageDataset, **kwargs: object) -> Trainer:
    torch.manual_seed(config.seed)
    trainer = Trainer(build_model(config, data), config, **kwargs)  # type: ignore[arg-type]
    trainer.fit(data)
    return trainer


def test_budget_chooses_the_steps_and_the_schedule(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_rates(monkeypatch)
    # 384 images / 32 = 12 steps per epoch; 0.95 * 4.0 s / 0.1 s = 37 steps = 3 epochs + 1.
    config = _budget_config(quick_config, 4.0)
    trainer = _fit(config, bars)
    assert trainer.plan is not None and trainer.plan.total_steps == 37
    assert trainer.global_step == 37 and len(trainer.history) == 4
    assert trainer.history[-1]["images_per_second"] > 0
    # One-cycle laid over the 37 steps: the last step ends the decay.
    assert trainer.schedule.scheduler.last_epoch == 37  # type: ignore[union-attr]
    assert trainer.optimizer.param_groups[0]["lr"] < config.lr * 0.01
    saved = json.loads((config.run_dir / "budget.json").read_text())
    assert saved["total_steps"] == 37 and saved["used"]["steps"] == 37


class TickingWatch(BudgetWatch):
    """A watch whose clock moves 0.05 s at every check (once per batch, once per epoch):
    the run's timing is then the same on any machine, however loaded."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.tick = FakeClock()
        super().__init__(*args, **kwargs, clock=self.tick)  # type: ignore[arg-type]

    def should_stop(self, steps_done: int) -> bool:
        self.tick.now += 0.05
        return super().should_stop(steps_done)


def test_budget_planned_again_lays_the_schedule_over_the_new_length(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_rates(monkeypatch, step=0.1)  # the probe says 0.1 s; the ticking clock ~0.055
    monkeypatch.setattr(budget, "REPLAN_TOLERANCE", 0.03)
    monkeypatch.setattr(budget, "BudgetWatch", TickingWatch)
    config = _budget_config(quick_config, 1.3)  # 12 steps planned: one epoch, kept
    trainer = _fit(config, bars)
    assert trainer.plan is not None and "replanned_from" not in trainer.plan.used
    config = dataclasses.replace(_budget_config(quick_config, 5.0), name="long")  # 47 steps
    trainer = _fit(config, bars)
    plan, watch = trainer.plan, trainer.watch
    assert plan is not None and watch is not None and plan.used["replanned_from"] == 47
    assert plan.total_steps > 47 and plan.used["replans"] >= 1
    assert trainer.global_step == plan.total_steps and len(trainer.history) == plan.epochs
    assert not plan.used["stopped_early"] and watch.elapsed() <= 5.0
    assert trainer.optimizer.param_groups[0]["lr"] < config.lr * 0.01  # annealed at the end
    saved = json.loads((config.run_dir / "budget.json").read_text())
    assert saved["total_steps"] == plan.total_steps


def test_resume_after_plans_made_again_matches_the_uninterrupted_run(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fixed_rates(monkeypatch, step=0.1)
    monkeypatch.setattr(budget, "REPLAN_TOLERANCE", 0.03)
    monkeypatch.setattr(budget, "BudgetWatch", TickingWatch)
    whole = _fit(dataclasses.replace(_budget_config(quick_config, 5.0), name="whole"), bars)
    config = dataclasses.replace(_budget_config(quick_config, 5.0), name="cut")
    with pytest.raises(KeyboardInterrupt):  # re-plans at epochs 2-4 (ticks settle), cut at 5
        _fit(config, bars, callbacks=[StopAt(5)])
    assert json.loads((config.run_dir / "budget.json").read_text())["used"]["replans"] >= 2
    monkeypatch.setattr(budget, "BudgetWatch", BudgetWatch)
    monkeypatch.setattr(budget, "REPLAN_TOLERANCE", float("inf"))
    torch.manual_seed(config.seed)
    resumed = Trainer(build_model(config, bars), config)
    resumed.fit(bars, resume=True)
    assert whole.plan is not None and resumed.global_step == whole.plan.total_steps
    for x, y in zip(
        whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_budget_measurement_does_not_change_the_training(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A plan of exactly 3 epochs trains the same weights as epochs=3 without a budget:
    the probe draws no random numbers the run would have drawn."""
    calls: list[int] = []
    real = budget.time_training_steps

    def measured_then_fixed(*args: object, **kwargs: object) -> float:
        real(*args, **kwargs, seconds=0.0)  # the real probe runs, and must disturb nothing
        calls.append(1)
        return 0.1

    monkeypatch.setattr(budget, "time_training_steps", measured_then_fixed)
    monkeypatch.setattr(budget, "time_evaluation", lambda *a, **k: 0.0)
    monkeypatch.setattr(budget, "REPLAN_TOLERANCE", float("inf"))
    plain = dataclasses.replace(quick_config, augment="flip", name="plain")
    budgeted = dataclasses.replace(plain, name="budgeted", time_budget=3.8)  # 36 steps
    a, b = _fit(plain, bars), _fit(budgeted, bars)
    assert calls and b.plan is not None and b.plan.total_steps == 36 and len(b.history) == 3
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


class StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_follows_the_saved_plan(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fixed_rates(monkeypatch)
    config = _budget_config(quick_config, 4.0)
    with pytest.raises(KeyboardInterrupt):
        _fit(config, bars, callbacks=[StopAt(2)])
    assert len(calls) == 1
    torch.manual_seed(config.seed)
    trainer = Trainer(build_model(config, bars), config)
    trainer.fit(bars, resume=True)
    assert len(calls) == 1  # not measured again
    assert trainer.plan is not None and trainer.global_step == trainer.plan.total_steps == 37


def test_resume_refuses_a_different_budget(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_rates(monkeypatch)
    plain = dataclasses.replace(quick_config, epochs=1)
    _fit(plain, bars)
    with pytest.raises(ConfigError, match=r"time_budget=None, received time_budget=4.0"):
        Trainer(build_model(plain, bars), _budget_config(plain, 4.0)).fit(bars, resume=True)
    budgeted = dataclasses.replace(_budget_config(quick_config, 2.0), name="b")
    _fit(budgeted, bars)
    again = dataclasses.replace(budgeted, time_budget=None)
    with pytest.raises(ConfigError, match=r"--time-budget 2.0"):
        Trainer(build_model(again, bars), again).fit(bars, resume=True)


def test_too_small_a_budget_fails_before_training(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_rates(monkeypatch)
    config = _budget_config(quick_config, 0.5)  # 4 steps; an epoch is 12
    with pytest.raises(ConfigError, match=r"at least one epoch.*12 steps"):
        _fit(config, bars)
    assert not (config.run_dir / "checkpoint.safetensors").exists()


def test_real_measurement_keeps_the_run_near_its_budget(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    config = _budget_config(quick_config, 3.0)
    trainer = _fit(config, bars)
    assert trainer.plan is not None and trainer.plan.total_steps >= 12
    used = trainer.plan.used
    assert used["fit_seconds"] <= 3.0 * budget.HARD_STOP + 0.5, used
    assert used["steps"] == trainer.global_step


def test_cli_refuses_epochs_with_a_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--time-budget", "5m", "--epochs", "3", "--runs-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "epochs=3 and time_budget='5m'" in err and "--time-budget none" in err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (300, "5 min"),
        (90, "1.5 min"),
        (100, "100 s"),
        (5400, "1.5 h"),
        (3600, "1 h"),
        (45.4, "45 s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert budget.format_duration(seconds) == text
