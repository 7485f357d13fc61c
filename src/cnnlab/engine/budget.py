"""Time-budgeted training: measure this machine, then train as many steps as fit.

``TrainConfig.time_budget`` ("5m", "90s", "1h", 300) replaces a fixed number of epochs
with a number of optimizer steps chosen before training starts:

1. The run's real training step (a copy of the model with the CPU settings the tuner
   chose, the run's optimizer, batches from the run's own loader and augmentation) is
   timed for a few seconds, and so is evaluation (per image, with the run's TTA).
2. The budget pays for training, the validation pass after every epoch and the final
   test evaluation. ``SAFETY`` of it is planned, as the rate is a sample of a machine
   whose load changes; the steps that fit become the schedule's length, so one-cycle
   warms up and anneals within the budget. The last epoch may be partial.
3. The plan is written to the run folder (``budget.json``): ``--resume`` reads it back
   instead of measuring again, so a resumed run takes exactly the steps it planned.
4. At the start of every epoch the plan is made again when the epochs so far (median
   rate, per-epoch costs included) ran more than ``REPLAN_TOLERANCE`` off the plan's
   rate; the schedule is laid out again over the new length and stepped to where the run
   is (a re-plan mid-anneal moves the learning rate a little at that step). A few
   seconds of probing on a shared machine are a small sample: on 2 cores of an AMD EPYC
   (Zen 4), with two members probing at once, the probe said 0.124-0.164 s/step and
   first epochs ran at 0.115-0.142; and first epochs ran ~10% slower than later ones
   (31 s, then 27-28 s), so a plan made only once used 89% of the budget.
5. From then on the step time is watched. A run that falls behind by more than
   ``DRIFT_WARN`` is told so; one that would overrun the budget by more than
   ``HARD_STOP - 1`` stops there and says so, at the real time.

What the budget does not count: loading the data, the autotuner's first timing (cached
afterwards), this measurement (~``PROBE_SECONDS`` s) and writing the report.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import CheckpointError, ConfigError
from cnnlab.engine import evaluator
from cnnlab.engine.step import TrainStep
from cnnlab.tasks.base import Targets, Task

# Share of the budget that is planned. 0.97 let one of three 5-minute runs train 303 s
# when the machine was busier after the first epoch than during it.
SAFETY = 0.95
PROBE_SECONDS = 3.0  # timed training steps last at least this long...
PROBE_MIN_STEPS = 5  # ...and count at least this many
PROBE_WARMUP = 3  # untimed first steps: oneDNN picks its kernels on the first calls
EVAL_PROBE_IMAGES = 512  # images timed to estimate evaluation
REPLAN_TOLERANCE = 0.03  # plan again when the rate seen is this far off the plan's
DRIFT_WARN = 1.10  # warn when the run is projected to end past 110% of the budget
HARD_STOP = 1.10  # ...and stop training when it reaches it
_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|min|m|sec|s)?")


def parse_duration(value: Any) -> float | None:
    """Seconds from 300, "300", "90s", "5m", "5min", "1.5h" or "1m30s"; None for None,
    "none" or "off" (no budget).

    Raises:
        ConfigError: for anything else, or a duration that is not positive.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
        return None
    text = "".join(value.lower().split()) if isinstance(value, str) else ""
    parts = list(_PART.finditer(text))
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif parts and "".join(p.group(0) for p in parts) == text:
        seconds = sum(float(p.group(1)) * _UNITS[p.group(2) or ""] for p in parts)
    else:
        raise ConfigError(
            'Expected time_budget as seconds (300) or a duration ("90s", "5m", "1.5h", '
            f'"1m30s"), received {value!r}'
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"Expected a positive time_budget, received {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``300`` -> "5 min", ``90`` -> "1.5 min", ``100`` -> "100 s", ``5400`` -> "1.5 h"."""
    if seconds >= 3600 and seconds % 360 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 6 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:.0f} s"


@dataclass
class BudgetPlan:
    """The steps a budget buys on this machine, and the measurements behind them.

    Attributes:
        budget_seconds: the budget: training, validation and the test evaluation.
        step_seconds: measured seconds per training step (loading, augmenting, stepping).
        eval_seconds_per_image: measured evaluation seconds per image (with TTA).
        steps_per_epoch: batches in one pass over the training images.
        total_steps: optimizer steps planned: the schedule's length.
        epochs: passes started (the last may be partial).
        val_images: images validated after every epoch.
        test_images: images of the final test evaluation.
        used: filled in when training ends (seconds, steps taken, stopped early or not).
    """

    budget_seconds: float
    step_seconds: float
    eval_seconds_per_image: float
    steps_per_epoch: int
    total_steps: int
    epochs: int
    val_images: int
    test_images: int
    used: dict[str, Any] = field(default_factory=dict)

    @property
    def eval_images(self) -> int:
        """Images evaluated over the run: validation after each epoch, then the test."""
        return self.test_images + self.epochs * self.val_images

    @property
    def test_seconds(self) -> float:
        return self.test_images * self.eval_seconds_per_image

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"time budget {format_duration(self.budget_seconds)}: {self.total_steps:,} steps "
            f"({self.total_steps / self.steps_per_epoch:.2f} epochs) at {self.step_seconds:.3f} "
            f"s/step measured here, {self.eval_images:,} images evaluated at "
            f"{self.eval_seconds_per_image * 1e3:.2f} ms each"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BudgetPlan:
        try:
            return cls(
                budget_seconds=float(values["budget_seconds"]),
                step_seconds=float(values["step_seconds"]),
                eval_seconds_per_image=float(values["eval_seconds_per_image"]),
                steps_per_epoch=int(values["steps_per_epoch"]),
                total_steps=int(values["total_steps"]),
                epochs=int(values["epochs"]),
                val_images=int(values["val_images"]),
                test_images=int(values["test_images"]),
                used=dict(values.get("used") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"a budget plan needs its measured fields; {e!r}") from None


def steps_that_fit(
    seconds: float,
    step_seconds: float,
    eval_seconds_per_image: float,
    steps_per_epoch: int,
    val_images: int,
    test_images: int,
    done: int = 0,
) -> int:
    """Total steps (``done`` included) that ``seconds`` more pay for, with a validation
    after each epoch still to start and the test evaluation at the end.

    Tries 1, 2, ... more epochs: with ``e`` epochs the evaluation is known, and the steps
    are what is left, at most ``e`` whole epochs; the first ``e`` that is not filled is
    the last worth trying.
    """
    validated = done // steps_per_epoch  # epochs whose validation is already paid
    best, epochs = done, validated + 1
    while True:
        evaluated = test_images + (epochs - validated) * val_images
        afford = int((seconds - evaluated * eval_seconds_per_image) / step_seconds)
        if afford <= 0:
            return best
        best = max(best, min(done + afford, epochs * steps_per_epoch))
        if done + afford <= epochs * steps_per_epoch:
            return best
        epochs += 1


def plan_steps(
    budget_seconds: float,
    *,
    step_seconds: float,
    eval_seconds_per_image: float,
    steps_per_epoch: int,
    val_images: int,
    test_images: int,
) -> BudgetPlan:
    """The optimizer steps that fit ``SAFETY`` of the budget after evaluation is paid for.

    Validation runs after every epoch started, so its cost depends on the epochs the
    steps span (:func:`steps_that_fit`).

    Raises:
        ConfigError: when the budget cannot pay for one epoch. One epoch is the minimum:
            with less, some training images are never seen, and the schedule's warm-up
            and decay are squeezed into a handful of steps.
    """
    steps = steps_that_fit(
        budget_seconds * SAFETY, step_seconds, eval_seconds_per_image, steps_per_epoch,
        val_images, test_images,
    )  # fmt: skip
    if steps < steps_per_epoch:
        one_epoch = (
            steps_per_epoch * step_seconds + (test_images + val_images) * eval_seconds_per_image
        ) / SAFETY
        raise ConfigError(
            f"Expected a time_budget of at least one epoch, received "
            f"time_budget={format_duration(budget_seconds)}: it buys {steps} training steps "
            f"at {step_seconds:.3f} s/step measured on this machine, and one epoch is "
            f"{steps_per_epoch} steps (~{one_epoch:.0f} s with evaluation). With less, some "
            "training images are never seen and the schedule has no room to warm up and "
            "decay; give a larger budget, a smaller model or fewer training images"
        )
    return BudgetPlan(
        budget_seconds=budget_seconds,
        step_seconds=step_seconds,
        eval_seconds_per_image=eval_seconds_per_image,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps,
        epochs=math.ceil(steps / steps_per_epoch),
        val_images=val_images,
        test_images=test_images,
    )


def resumed_plan(saved: Any, wanted: Any, plan_file: Path, checkpoint: Path) -> BudgetPlan | None:
    """The plan a run being resumed made (None if it had no budget).

    Raises:
        ConfigError: if the run was started with another budget (or none) than ``wanted``.
        CheckpointError: if the budgeted run's plan file is missing.
    """
    if parse_duration(saved) != parse_duration(wanted):
        raise ConfigError(
            f"{checkpoint} was written by a run with time_budget={saved!r}, received "
            f"time_budget={wanted!r}; resume with the run's own --time-budget "
            f"{saved if saved is not None else 'none'}"
        )
    if saved is None:
        return None
    if not plan_file.exists():
        raise CheckpointError(f"{plan_file}: the budgeted run's plan is missing")
    return BudgetPlan.from_dict(json.loads(plan_file.read_text()))


def time_training_steps(
    model: nn.Module,
    task: Task,
    optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    batches: Iterable[tuple[torch.Tensor, Targets]],
    *,
    channels_last: bool = False,
    bf16: bool = False,
    compile: bool = False,
    seconds: float = PROBE_SECONDS,
    min_steps: int = PROBE_MIN_STEPS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median seconds per step of real training on a copy of ``model`` (the median:
    on a shared machine a step now and then waits for another process).

    The time includes drawing each batch from ``batches`` (loading and augmenting), as
    a run's steps do. Global RNG state is restored afterwards, so the measurement does
    not change what the run then trains.
    """
    with torch.random.fork_rng(devices=[]):
        probe = copy.deepcopy(model).train()
        if channels_last:
            probe = probe.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        forward = torch.compile(probe) if compile else probe
        step = TrainStep(
            probe, task, optimizer_factory(probe.parameters()), forward=forward, bf16=bf16
        )
        it = iter(batches)
        for _ in range(PROBE_WARMUP):
            step(*next(it))
        times: list[float] = []
        started = last = clock()
        for x, targets in it:  # a step's time includes drawing its batch
            step(x, targets)
            now = clock()
            times.append(now - last)
            last = now
            if len(times) >= min_steps and now - started >= seconds:
                break
        if not times:
            raise ConfigError("Expected batches to time the training step, received none")
        return statistics.median(times)


def time_evaluation(
    model: nn.Module,
    task: Task,
    images: torch.Tensor,
    settings: evaluator.EvalSettings,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per image of evaluation (with the settings' TTA) on up to
    ``EVAL_PROBE_IMAGES`` of ``images``, after one untimed warm-up batch."""
    sample = images[:EVAL_PROBE_IMAGES]
    if len(sample) == 0:
        return 0.0
    evaluator.outputs(model, task, sample[:8], settings)
    started = clock()
    evaluator.outputs(model, task, sample, settings)
    return (clock() - started) / len(sample)


class BudgetWatch:
    """Keeps a budgeted run to its plan: when to stop, and what to say if it runs late.

    Args:
        plan: the plan being followed.
        log: where warnings and the closing line go.
        already: seconds spent before this process (a resumed run's earlier epochs).
        steps: steps taken before this process.
    """

    def __init__(
        self,
        plan: BudgetPlan,
        log: Callable[[str], None],
        *,
        already: float = 0.0,
        steps: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.plan, self.log, self.clock = plan, log, clock
        self.started = clock() - already
        self.warned = False
        self.stopped_early = False
        self.rate = plan.step_seconds  # seconds per step the current plan assumes
        self.epoch_starts = [(steps, already)]  # (steps done, elapsed) at each epoch start

    def elapsed(self) -> float:
        return self.clock() - self.started

    def should_stop(self, steps_done: int) -> bool:
        """True once the planned steps are taken, or when training would push the run
        (with its test evaluation) past ``HARD_STOP`` of the budget."""
        plan = self.plan
        if steps_done >= plan.total_steps:
            return True
        if self.elapsed() + plan.test_seconds <= HARD_STOP * plan.budget_seconds:
            return False
        if not self.stopped_early:
            self.stopped_early = True
            self.log(
                f"warning: stopping at step {steps_done:,} of {plan.total_steps:,}: this machine "
                f"ran slower than measured and the {format_duration(plan.budget_seconds)} "
                f"budget would be overrun by more than {HARD_STOP - 1:.0%} "
                f"({self.elapsed():.0f} s so far); the learning rate had not finished decaying"
            )
        return True

    def replan(self, steps_done: int) -> int | None:
        """At the start of an epoch: the new total of steps when the epochs so far ran
        more than ``REPLAN_TOLERANCE`` off the plan's rate, else None.

        The rate seen is the median over this process's epochs of (wall time - the
        validation's share) / steps: checkpoints and other per-epoch costs included, and
        robust to one slow epoch. See the module's notes.
        """
        plan = self.plan
        now = self.elapsed()
        if steps_done >= plan.total_steps or steps_done <= self.epoch_starts[-1][0]:
            return None
        self.epoch_starts.append((steps_done, now))
        validation = plan.val_images * plan.eval_seconds_per_image
        seen = statistics.median(
            (t1 - t0 - validation) / (s1 - s0)
            for (s0, t0), (s1, t1) in itertools.pairwise(self.epoch_starts)
        )
        if abs(seen / self.rate - 1) <= REPLAN_TOLERANCE:
            return None
        total = steps_that_fit(
            plan.budget_seconds * SAFETY - now, seen, plan.eval_seconds_per_image,
            plan.steps_per_epoch, plan.val_images, plan.test_images, done=steps_done,
        )  # fmt: skip
        plan.used.setdefault("replanned_from", plan.total_steps)
        plan.used["replans"] = plan.used.get("replans", 0) + 1
        plan.used["step_seconds_seen"] = seen
        self.log(
            f"time budget: steps ran at {seen:.3f} s, not {self.rate:.3f}: "
            f"{total:,} steps instead of {plan.total_steps:,}"
        )
        self.rate = seen
        plan.total_steps, plan.epochs = total, math.ceil(total / plan.steps_per_epoch)
        return total

    def after_epoch(self, steps_done: int, epoch_seconds: float, epoch_steps: int) -> None:
        """Warn once if the rate seen in this epoch would end the run past ``DRIFT_WARN``."""
        plan = self.plan
        if self.warned or epoch_steps == 0 or steps_done >= plan.total_steps:
            return
        observed = epoch_seconds / epoch_steps
        remaining = plan.total_steps - steps_done
        epochs_left = math.ceil(remaining / plan.steps_per_epoch)
        evaluation = (
            epochs_left * plan.val_images + plan.test_images
        ) * plan.eval_seconds_per_image
        projected = self.elapsed() + remaining * observed + evaluation
        if projected > DRIFT_WARN * plan.budget_seconds:
            self.warned = True
            self.log(
                f"warning: steps now take {observed:.3f} s, {plan.step_seconds:.3f} s when "
                f"measured (is something else running?); the run is heading for "
                f"{projected:.0f} s of its {plan.budget_seconds:.0f} s budget and stops "
                f"training at {HARD_STOP:.0%} of it"
            )

    def finish(self, steps_done: int) -> dict[str, Any]:
        """Record what was used in the plan, log it, and return it."""
        plan = self.plan
        fit = self.elapsed()
        plan.used |= {
            "fit_seconds": fit,
            "steps": steps_done,
            "step_seconds": fit / max(steps_done, 1),  # includes validation passes
            "stopped_early": self.stopped_early,
        }
        self.log(
            f"time budget {format_duration(plan.budget_seconds)}: {steps_done:,} of "
            f"{plan.total_steps:,} steps in {fit:.0f} s with validation; "
            f"~{plan.test_seconds:.0f} s of test evaluation reserved"
        )
        return plan.used
