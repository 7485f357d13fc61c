"""CPU-aware speed settings: time channels_last, bf16 autocast and torch.compile on a few
real training steps, keep the fastest that matches fp32, and cache the decision.

Decisions (issue 6, item 4):

- The baseline is plain fp32 eager NCHW (with any value the user fixed applied). A
  candidate replaces it only if its median step is more than ``MARGIN`` (3%) faster,
  so noise cannot make the tuner pick something slower than the baseline.
- bf16 autocast is a candidate only on CPUs with native bf16 (``avx512_bf16`` or
  ``amx_bf16``): elsewhere oneDNN emulates it and it is slower than fp32.
- torch.compile costs tens of seconds of compilation per model (and its steps were
  slower than eager on the 2-core machine of issue 6), so it is tried only for runs
  expected to last at least ``COMPILE_MIN_RUN_SECONDS``, and it wins only if the
  time it saves over the whole run pays for its compilation.
- "Keeps accuracy": every candidate's first loss on a fixed batch (same weights,
  dropout off) must be within ``LOSS_RTOL`` of fp32's (looser for bf16).
- Timing interleaves candidates over up to ``ROUNDS`` rounds (a time budget of
  ``TIMING_SECONDS``) and takes, per candidate, the median of its per-round ratio to
  the baseline: on a shared machine load drifts, and neighbours in time see the same.
- The decision is cached in ``<cache>/autotune.json`` (the data cache folder,
  ``$CNNLAB_DATA`` or ``~/.cache/cnnlab``), keyed by model, input shape, batch size,
  threads, torch version, CPU (name and flags) and torch's instruction-set caps. A decision taken while the machine
  was busy stays until that file is deleted; fixing a field in the config overrides it.

Measured on the shared 2-core development machine (avx512_bf16, no AMX; 3 other agents
running), batch 128, 1x28x28, fp32 eager -> chosen:
  1 thread (load ~2), 2 runs each: resnet_mini 0.21/0.15 s/step -> channels_last 1.40x/1.45x;
  keras_cifar 0.21/0.19 s/step -> channels_last 1.31x/1.40x. bf16 was 5-13% slower than
  fp32, channels_last+bf16 slower than channels_last. Tuning took 6.5-9 s.
  2 threads, load ~2.3: resnet_mini 0.133 s/step -> channels_last 1.40x (36.7 s, the
  process's first tuning: oneDNN builds its kernels); keras_cifar 0.156 -> channels_last
  1.28x (5.9 s). At load 3-5 OMP threads fought for the cores, steps took 0.5-1.6 s and
  resnet_mini's choice wandered (channels_last, channels_last+bf16, bf16+compile);
  keras_cifar chose channels_last 3 of 3 times.
On a VM of the same kind with AMX (2026-11-30), 2 threads, s/step fp32 / channels_last /
bf16 / channels_last+bf16: resnet_mini at batch 256 0.206 / 0.155 / 0.170 / 0.108, and
keras_cifar at 128 0.141 / 0.096 / 0.081 / 0.047: channels_last+bf16 chosen for both.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.cpu import ISA_SWITCHES
from cnnlab.core.cpu import native_bf16 as cpu_bf16_flag
from cnnlab.core.io import write_json
from cnnlab.data.download import default_cache_dir
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.step import TrainStep
from cnnlab.layers.dropout import Dropout
from cnnlab.tasks import Task, get_task
from cnnlab.tasks.base import Targets

MARGIN = 0.03  # a candidate must be >3% faster than the baseline to replace it
WARMUP_STEPS = 2  # per candidate, untimed: oneDNN picks kernels on the first calls
STEPS = 3  # timed steps per candidate per round, at most
ROUNDS = 7  # interleaved rounds at most; the median over rounds is the candidate's time
MIN_ROUNDS = 3  # rounds at least, even past the budget
TIMING_SECONDS = 8.0  # budget for the timing rounds of one stage (eager, then compile)
RUN_SHARE = 0.02  # ...and at most this share of the run's estimated time, past MIN_ROUNDS
STEP_BLOCK_SECONDS = 0.25  # one runner's turn in a round: long enough to be above timer noise
LOSS_RTOL = {"fp32": 1e-3, "bf16": 3e-2}  # bf16 keeps ~3 significant digits
# Compiling took 20 s (keras_cifar) and 57 s (resnet_mini) on the 2-core machine: trying
# it only for runs of 30 min or more keeps a compile that loses under ~3% of the run.
COMPILE_MIN_RUN_SECONDS = 1800.0
CACHE_FILE = "autotune.json"
CACHE_VERSION = 1
SETTINGS = ("channels_last", "bf16", "compile")


@dataclass(frozen=True)
class CpuSettings:
    """How the trainer runs a model: memory format, autocast dtype, compilation."""

    channels_last: bool = False
    bf16: bool = False
    compile: bool = False

    @classmethod
    def of(cls, config: TrainConfig) -> CpuSettings:
        """The config's values, automatic (None) read as off: the fp32 eager baseline."""
        return cls(**{f: bool(getattr(config, f)) for f in SETTINGS})

    @property
    def name(self) -> str:
        parts = [f for f in SETTINGS if getattr(self, f)]
        return "+".join(parts) if parts else "fp32 eager"


@dataclass
class Choice:
    """The resolved settings and the evidence for them.

    Attributes:
        settings: what the trainer uses.
        source: tuned | cached | config | autotune off | checkpoint | not tuned (<why>).
        speedup: baseline step time / chosen step time, when measured.
        step_seconds: median seconds per training step of each timed candidate.
        compile_seconds: time the first compiled step took, when compile was tried.
        skipped: candidate -> why it was not timed or was rejected.
        baseline: the candidate the speedup is measured against.
    """

    settings: CpuSettings
    source: str
    speedup: float | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    compile_seconds: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    baseline: str = "fp32 eager"

    def message(self) -> str:
        """One line for the log, e.g. ``cpu settings: channels_last (1.42x vs fp32 eager; cached)``."""
        detail = self.source
        if self.speedup is not None:
            detail = f"{self.speedup:.2f}x vs {self.baseline}; {detail}"
        return f"cpu settings: {self.settings.name} ({detail})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Choice:
        settings = CpuSettings(**{k: bool(values["settings"][k]) for k in SETTINGS})
        return cls(
            settings=settings,
            source=str(values["source"]),
            speedup=values.get("speedup"),
            step_seconds=dict(values.get("step_seconds") or {}),
            compile_seconds=values.get("compile_seconds"),
            skipped=dict(values.get("skipped") or {}),
            baseline=str(values.get("baseline", "fp32 eager")),
        )


# -- the machine ----------------------------------------------------------------------------


def cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name and feature flags (from /proc/cpuinfo; empty elsewhere)."""
    name, flags = platform.processor() or platform.machine(), list[str]()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = sorted(value.split())
    return name, flags


def native_bf16() -> tuple[bool, str]:
    """Whether the CPU computes bf16 natively, and the reason in words.

    torch's own check (``mkldnn._is_mkldnn_bf16_supported``) is true on any AVX-512
    CPU, where oneDNN emulates bf16 and runs slower than fp32; the flags are what count
    (:func:`cnnlab.core.cpu.native_bf16` reads them).
    """
    flag = cpu_bf16_flag()
    if flag is not None:
        return True, f"CPU has {flag}"
    return False, "CPU lacks native bf16 (no avx512_bf16 or amx_bf16 flag)"


# -- choosing -------------------------------------------------------------------------------


def pick(
    baseline: CpuSettings,
    step_seconds: dict[CpuSettings, float],
    *,
    margin: float = MARGIN,
    steps: int = 0,
    compile_seconds: float = 0.0,
) -> CpuSettings:
    """The fastest candidate that beats ``baseline`` by more than ``margin``, else baseline.

    A compiled candidate must also repay its compilation over ``steps`` training steps.
    """
    base = step_seconds[baseline]
    best, best_time = baseline, base
    for settings, seconds in step_seconds.items():
        if seconds >= base * (1 - margin) or seconds >= best_time:
            continue
        if settings.compile and (base - seconds) * steps <= compile_seconds:
            continue
        best, best_time = settings, seconds
    return best


def candidates(fixed: dict[str, bool], *, bf16_ok: bool) -> tuple[CpuSettings, list[CpuSettings]]:
    """The baseline and the eager candidates (baseline first) for the settings not fixed."""
    free = [f for f in ("channels_last", "bf16") if f not in fixed]
    if not bf16_ok and "bf16" in free:
        free.remove("bf16")
    base = {"channels_last": False, "bf16": False, **fixed, "compile": False}  # timed eager
    options = [
        CpuSettings(**{**base, **dict(zip(free, values, strict=True))})
        for values in itertools.product((False, True), repeat=len(free))
    ]
    return CpuSettings(**base), options


# -- timing ---------------------------------------------------------------------------------


class _Runner:
    """One candidate: a private copy of the model and optimizer, stepping on a fixed batch."""

    def __init__(
        self, model: nn.Module, settings: CpuSettings, x: torch.Tensor, targets: Targets,
        task: Task,
    ) -> None:  # fmt: skip
        self.settings, self.task = settings, task
        self.model = copy.deepcopy(model).train()
        for module in self.model.modules():  # dropout off: the loss check must be exact
            if isinstance(module, nn.modules.dropout._DropoutNd | Dropout):
                module.eval()
        self.x, self.targets = x, targets
        if settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            if x.dim() == 4:
                self.x = x.contiguous(memory_format=torch.channels_last)
        forward = torch.compile(self.model) if settings.compile else self.model
        # A small lr: the weights barely move, so every step costs what a real one does.
        optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.train_step = TrainStep(
            self.model, task, optimizer, forward=forward, bf16=settings.bf16
        )
        self.first_loss = math.nan  # before any update: comparable across candidates

    def step(self) -> float:
        """One training step, the trainer's own (cnnlab.engine.step); returns the loss."""
        losses, _ = self.train_step(self.x, self.targets)
        value = float(losses["loss"])
        if math.isnan(self.first_loss):
            self.first_loss = value
        return value


def _loss_ok(settings: CpuSettings, loss: float, reference: float) -> bool:
    rtol = LOSS_RTOL["bf16" if settings.bf16 else "fp32"]
    return math.isfinite(loss) and abs(loss - reference) <= rtol * max(1.0, abs(reference))


def time_candidates(
    runners: Sequence[_Runner],
    *,
    rounds: int = ROUNDS,
    budget: float = TIMING_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[CpuSettings, float]:
    """Seconds per step of each runner; the first runner is the baseline.

    Each round steps every runner in turn, so neighbours in time see the same load.
    A candidate's time is the median over rounds of its ratio to the baseline in the
    same round, times the baseline's median: load that comes and goes between rounds
    cancels. Rounds stop at ``rounds``, or after ``MIN_ROUNDS`` once ``budget`` seconds
    are spent; a round takes up to ``STEPS`` steps per runner, fewer for slow models.
    """
    samples: dict[CpuSettings, list[float]] = {r.settings: [] for r in runners}
    begin = clock()
    steps = 1  # the first round measures how many steps fill STEP_BLOCK_SECONDS
    for done in range(rounds):
        if done >= MIN_ROUNDS and clock() - begin > budget:
            break
        for runner in runners:
            started = clock()
            for _ in range(steps):
                runner.step()
            samples[runner.settings].append((clock() - started) / steps)
        if done == 0:  # aim at about STEP_BLOCK_SECONDS per runner per round
            steps = max(1, min(STEPS, int(STEP_BLOCK_SECONDS / samples[runners[0].settings][0])))
    base = samples[runners[0].settings]
    return {
        settings: statistics.median(base)
        * statistics.median(t / b for t, b in zip(times, base, strict=True))
        for settings, times in samples.items()
    }


def tune(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int,
    num_classes: int,
    fixed: dict[str, bool],
    run_steps: int,
    task: Task | None = None,
    targets: Targets | None = None,
    run_seconds: float | None = None,
    inputs: torch.Tensor | None = None,
) -> Choice:
    """Time the candidates on random data of the real batch shape (or on ``inputs``, a
    real batch: token ids must be valid ids); returns the choice.

    ``run_seconds`` (a time budget) replaces ``run_steps`` as the run's length: the steps
    it buys at the baseline's first step time.
    The global RNG is left as it was, so a tuned run trains exactly like a cached one.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = inputs if inputs is not None else torch.randn(batch_size, *input_shape)
        if targets is None:  # a classifier's random labels
            targets = {"label": torch.randint(0, num_classes, (batch_size,))}
        task = task or get_task("classify")
        bf16_ok, why = native_bf16()
        baseline, options = candidates(fixed, bf16_ok=bf16_ok)
        skipped = {} if bf16_ok or "bf16" in fixed else {"bf16": why}
        runners = _checked_runners(model, options, x, targets, task, skipped)
        started = time.perf_counter()
        runners[0].step()
        first = time.perf_counter() - started
        if run_seconds is not None:
            run_steps = max(1, int(run_seconds / first))
        budget = min(TIMING_SECONDS, RUN_SHARE * first * run_steps)
        times = time_candidates(runners, budget=budget)
        chosen = pick(baseline, times)
        compile_seconds = None
        if "compile" not in fixed:
            compile_seconds = _try_compile(model, runners, chosen, times, run_steps, skipped)
            chosen = pick(baseline, times, steps=run_steps, compile_seconds=compile_seconds or 0)
    speedup = times[baseline] / times[chosen]
    if fixed.get("compile"):
        chosen = dataclasses.replace(chosen, compile=True)  # layout timed eager, compiled on top
    return Choice(
        settings=chosen,
        source="tuned",
        speedup=speedup,
        step_seconds={s.name: t for s, t in times.items()},
        compile_seconds=compile_seconds,
        skipped=skipped,
        baseline=baseline.name,
    )


def _checked_runners(
    model: nn.Module,
    options: Sequence[CpuSettings],
    x: torch.Tensor,
    targets: Targets,
    task: Task,
    skipped: dict[str, str],
) -> list[_Runner]:
    """Runners whose first loss (same weights for all) matches the baseline's; warmed up."""
    runners: list[_Runner] = []
    reference = math.nan
    for settings in options:  # the baseline comes first and sets the reference
        runner = _Runner(model, settings, x, targets, task)
        loss = runner.step()
        if not runners:
            reference = loss
        elif not _loss_ok(settings, loss, reference):
            skipped[settings.name] = f"loss {loss:.5f} differs from fp32's {reference:.5f}"
            continue
        for _ in range(WARMUP_STEPS - 1):
            runner.step()
        runners.append(runner)
    return runners


def _try_compile(
    model: nn.Module,
    runners: list[_Runner],
    best: CpuSettings,
    times: dict[CpuSettings, float],
    run_steps: int,
    skipped: dict[str, str],
) -> float | None:
    """Time torch.compile on top of ``best``, if the run is long enough to repay it.

    Adds the compiled candidate to ``times`` (scaled to the first round's baseline, so
    load that changed in between cancels out); returns the compilation seconds.
    """
    baseline = runners[0]
    estimate = times[baseline.settings] * run_steps
    if estimate < COMPILE_MIN_RUN_SECONDS:
        skipped["compile"] = (
            f"run of ~{estimate:.0f} s is too short to repay compilation "
            f"(tried from {COMPILE_MIN_RUN_SECONDS:.0f} s)"
        )
        return None
    settings = dataclasses.replace(best, compile=True)
    started = time.perf_counter()
    try:
        runner = _Runner(model, settings, baseline.x.contiguous(), baseline.targets, baseline.task)
        loss = runner.step()  # the first call compiles
        compile_seconds = time.perf_counter() - started
        runner.step()
    except Exception as e:  # any compiler failure only removes the candidate
        skipped["compile"] = f"torch.compile failed: {str(e).splitlines()[0][:200]}"
        return None
    if not _loss_ok(settings, loss, baseline.first_loss):
        skipped["compile"] = f"loss {loss:.5f} differs from fp32's {baseline.first_loss:.5f}"
        return compile_seconds
    again = time_candidates([baseline, runner])
    times[settings] = again[settings] * times[baseline.settings] / again[baseline.settings]
    return compile_seconds


# -- the cache and the entry point ----------------------------------------------------------


def cache_path() -> Path:
    return default_cache_dir() / CACHE_FILE


def cache_key(
    model: nn.Module, config: TrainConfig, input_shape: Sequence[int], fixed: dict[str, bool]
) -> tuple[str, dict[str, Any]]:
    """A short hash and the description it hashes: what makes a timing valid elsewhere."""
    cpu, flags = cpu_info()
    described = {
        "model": config.model,
        "model_args": config.model_args,
        "module": type(model).__qualname__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "input_shape": list(input_shape),
        "batch_size": config.batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_flags": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
        # torch held to older kernels (ONEDNN_MAX_CPU_ISA=AVX2...) runs other code: bf16
        # that was fast uncapped is emulated, ~10x slower, under an AVX2 cap.
        "isa_switches": {s: os.environ[s] for s in ISA_SWITCHES if s in os.environ},
        "fixed": fixed,
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24], described


def load_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; an unreadable or foreign file is ignored with a warning."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
            raise ValueError(f"expected version {CACHE_VERSION} with 'entries'")
        return dict(data["entries"])
    except (OSError, ValueError, AttributeError) as e:
        warnings.warn(f"ignoring the autotune cache {path}: {e}", stacklevel=2)
        return {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` + ".lock" (where the OS has flock)."""
    try:
        import fcntl
    except ImportError:  # Windows: last writer wins, as before
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _store(path: Path, key: str, described: dict[str, Any], choice: Choice) -> None:
    """Add one decision to the cache. The read-modify-write holds a lock, so the members
    of an ensemble tuning at once all keep their entries."""
    try:
        with _locked(path):
            entries = load_cache(path)
            entries[key] = {**choice.to_dict(), "key": described}
            write_json(path, {"version": CACHE_VERSION, "entries": entries})
    except OSError as e:  # a read-only home must not stop training
        warnings.warn(f"cannot write the autotune cache {path}: {e}", stacklevel=2)


def untuned_default(fixed: dict[str, bool]) -> CpuSettings:
    """What a run that is not timed uses: channels_last where PyTorch convolves with
    oneDNN (x86 CPUs; 1.3-1.45x faster than NCHW for resnet_mini and the seed-000 net
    here), else the fp32 eager baseline. Fields fixed by the config are kept."""
    guess = {"channels_last": torch.backends.mkldnn.is_available()}
    return CpuSettings(**{**guess, **fixed})


def resolve(
    config: TrainConfig,
    model: nn.Module,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    run_steps: int,
    no_tuning: str | None = None,
    saved: dict[str, Any] | None = None,
    task: Task | None = None,
    targets: Targets | None = None,
    run_seconds: float | None = None,
    inputs: torch.Tensor | None = None,
) -> Choice:
    """The settings a run uses: explicit config values win, ``None`` fields are resolved.

    Order: all fixed by the config -> a resumed run's saved choice -> ``autotune=False``
    (the fp32 eager baseline) -> the cache -> the baseline when ``no_tuning`` gives a
    reason not to spend time (fast_dev_run, a short run: :func:`untuned_default`) -> a
    fresh timing, then cached.
    """
    fixed = {f: bool(getattr(config, f)) for f in SETTINGS if getattr(config, f) is not None}
    if len(input_shape) != 3:  # signals and token ids: channels_last is a 4-D layout
        fixed.setdefault("channels_last", False)
    baseline = CpuSettings(**fixed)
    if len(fixed) == len(SETTINGS):
        return Choice(baseline, "config")
    if saved is not None:
        resumed = Choice.from_dict(saved)
        resumed.settings = dataclasses.replace(resumed.settings, **fixed)
        resumed.source = "checkpoint"
        return resumed
    if not config.autotune:
        return Choice(baseline, "autotune off")
    key, described = cache_key(model, config, input_shape, fixed)
    entry = load_cache(cache_path()).get(key)
    if entry is not None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            cached = Choice.from_dict(entry)
            cached.source = "cached"
            return cached
    if no_tuning is not None:
        return Choice(untuned_default(fixed), f"not tuned: {no_tuning}")
    choice = tune(
        model, input_shape, batch_size=config.batch_size, num_classes=num_classes,
        fixed=fixed, run_steps=run_steps, task=task, targets=targets, run_seconds=run_seconds,
        inputs=inputs,
    )  # fmt: skip
    _store(cache_path(), key, described, choice)
    return choice
