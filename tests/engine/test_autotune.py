"""Autotune: picks the fastest accurate CPU settings, never a slower one, and caches it."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.app.cli import build_parser
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import autotune, load_checkpoint, trainer
from cnnlab.engine.autotune import CpuSettings, pick, resolve, tune
from cnnlab.engine.config import TrainConfig
from cnnlab.runs.run import build_model

BASE = CpuSettings()
CL = CpuSettings(channels_last=True)
BF16 = CpuSettings(bf16=True)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    torch.set_num_threads(1)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache" / autotune.CACHE_FILE


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3),
    )  # fmt: skip


def fake_times(seconds: dict[CpuSettings, float]) -> object:
    """A stand-in for time_candidates: fixed seconds per step, 1.0 for anything unlisted."""

    def timer(runners: Sequence[autotune._Runner], **_: object) -> dict[CpuSettings, float]:
        return {r.settings: seconds.get(r.settings, 1.0) for r in runners}

    return timer


def tuned(config: TrainConfig, **kwargs: object) -> autotune.Choice:
    return resolve(config, tiny_model(), (1, 8, 8), 3, run_steps=500, **kwargs)  # type: ignore[arg-type]


def test_pick_needs_more_than_the_margin() -> None:
    assert pick(BASE, {BASE: 1.0, CL: 0.90}) == CL  # 10% faster wins
    assert pick(BASE, {BASE: 1.0, CL: 0.99}) == BASE  # 1% is noise: keep the baseline
    assert pick(BASE, {BASE: 1.0, CL: 1.5, BF16: 0.8}) == BF16
    assert pick(BASE, {BASE: 1.0, CL: 0.9, BF16: 0.8}) == BF16  # the fastest of the winners


def test_compile_must_repay_its_compilation() -> None:
    compiled = CpuSettings(compile=True)
    times = {BASE: 1.0, compiled: 0.5}
    # 100 steps at 0.5 s saved each: 50 s, enough for a 40 s compile, not for a 60 s one.
    assert pick(BASE, times, steps=100, compile_seconds=40.0) == compiled
    assert pick(BASE, times, steps=100, compile_seconds=60.0) == BASE


@pytest.mark.parametrize(("cl_seconds", "expected"), [(0.90, CL), (0.99, BASE)])
def test_tune_with_a_fake_timer(
    monkeypatch: pytest.MonkeyPatch, cl_seconds: float, expected: CpuSettings
) -> None:
    monkeypatch.setattr(autotune, "native_bf16", lambda: (False, "no bf16 here"))
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: cl_seconds}))
    choice = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=10)
    assert choice.settings == expected
    assert choice.step_seconds == {"fp32 eager": 1.0, "channels_last": cl_seconds}
    assert choice.speedup == pytest.approx(1.0 / choice.step_seconds[expected.name])


def test_bf16_is_skipped_without_native_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "native_bf16", lambda: (False, "CPU lacks native bf16"))
    monkeypatch.setattr(autotune, "time_candidates", fake_times({BF16: 0.1}))
    choice = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=10)
    assert choice.skipped["bf16"] == "CPU lacks native bf16"
    assert not any("bf16" in name for name in choice.step_seconds)
    assert not choice.settings.bf16


def test_bf16_is_timed_with_native_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "native_bf16", lambda: (True, "CPU has avx512_bf16"))
    monkeypatch.setattr(autotune, "time_candidates", fake_times({BF16: 0.5}))
    choice = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=10)
    assert set(choice.step_seconds) == {"fp32 eager", "channels_last", "bf16", "channels_last+bf16"}
    assert choice.settings == BF16


def test_a_candidate_whose_loss_differs_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "native_bf16", lambda: (True, "yes"))
    monkeypatch.setitem(autotune.LOSS_RTOL, "bf16", 0.0)  # bf16 rounding now counts as wrong
    monkeypatch.setattr(autotune, "time_candidates", fake_times({BF16: 0.1}))
    choice = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=10)
    assert "differs from fp32" in choice.skipped["bf16"]
    assert not choice.settings.bf16


def test_cache_hit_skips_timing(monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    first = tuned(TrainConfig())
    assert (first.source, first.settings) == ("tuned", CL)
    assert private_cache.exists()

    def no_timing(*args: object, **kwargs: object) -> None:
        raise AssertionError("timed again despite the cache")

    monkeypatch.setattr(autotune, "tune", no_timing)
    again = tuned(TrainConfig())
    assert (again.source, again.settings) == ("cached", CL)
    assert again.message() == "cpu settings: channels_last (2.00x vs fp32 eager; cached)"
    # Another batch size is another key: not served from the cache.
    with pytest.raises(AssertionError, match="timed again"):
        tuned(TrainConfig(batch_size=64))
    # So is torch held to AVX2 kernels: bf16 chosen without the cap is emulated under it.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(AssertionError, match="timed again"):
        tuned(TrainConfig())


@pytest.mark.parametrize("text", ["{not json", '{"version": 1, "entries": []}', "[1, 2]"])
def test_corrupt_cache_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, private_cache: Path, text: str
) -> None:
    private_cache.parent.mkdir(parents=True)
    private_cache.write_text(text)
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    with pytest.warns(UserWarning, match="ignoring the autotune cache"):
        choice = tuned(TrainConfig())
    assert choice.source == "tuned"
    assert json.loads(private_cache.read_text())["version"] == autotune.CACHE_VERSION


def test_explicit_values_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    everything = TrainConfig(channels_last=False, bf16=True, compile=False)
    assert tuned(everything).settings == BF16
    assert tuned(everything).source == "config"
    # Fixing channels_last=False leaves only the other settings to tune.
    choice = tuned(TrainConfig(channels_last=False, bf16=False))
    assert choice.settings == BASE and choice.source == "tuned"


def test_autotune_off_gives_the_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    choice = tuned(TrainConfig(autotune=False))
    assert (choice.settings, choice.source) == (BASE, "autotune off")
    assert tuned(TrainConfig(autotune=False, bf16=True)).settings == BF16


@pytest.mark.parametrize("onednn", [True, False])
def test_no_tuning_reason_uses_the_untuned_default(
    monkeypatch: pytest.MonkeyPatch, onednn: bool
) -> None:
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: onednn)
    choice = tuned(TrainConfig(), no_tuning="fast_dev_run")
    assert (choice.settings, choice.source) == (CL if onednn else BASE, "not tuned: fast_dev_run")
    fixed = tuned(TrainConfig(channels_last=False), no_tuning="fast_dev_run")
    assert fixed.settings == BASE


def test_real_tuning_returns_a_valid_choice() -> None:
    choice = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=10)
    assert choice.step_seconds["fp32 eager"] > 0
    assert choice.settings.name in choice.step_seconds
    assert choice.speedup is not None and choice.speedup >= 1.0
    assert "compile" in choice.skipped  # a 10-step run never pays for compilation


def test_tuning_leaves_the_global_rng_alone() -> None:
    model = tiny_model()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    tune(model, (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=10)
    assert torch.equal(torch.rand(3), expected)


def test_fit_logs_and_records_the_choice(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick_config.epochs = 1
    lines: list[str] = []
    torch.manual_seed(0)
    trainer.Trainer(build_model(quick_config, bars), quick_config, log=lines.append).fit(bars)
    untuned = autotune.untuned_default({}).name
    assert lines[0].startswith(f"cpu settings: {untuned} (not tuned: 12 steps are too few")

    monkeypatch.setattr(trainer, "MIN_TUNE_STEPS", 1)
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    lines.clear()
    fitted = trainer.Trainer(build_model(quick_config, bars), quick_config, log=lines.append)
    fitted.fit(bars)
    assert lines[0] == "cpu settings: channels_last (2.00x vs fp32 eager; tuned)"
    assert next(fitted.model.parameters()).is_contiguous(memory_format=torch.channels_last)
    saved = json.loads((quick_config.run_dir / "cpu_settings.json").read_text())
    assert saved["settings"] == {"channels_last": True, "bf16": False, "compile": False}
    state = load_checkpoint(quick_config.run_dir / "checkpoint.safetensors")
    assert state["cpu_settings"]["settings"]["channels_last"] is True
    assert fitted.evaluate(bars.x_test, bars.y_test)["n"] == len(bars.y_test)


def test_resume_keeps_the_checkpoint_choice(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick_config.epochs = 2
    monkeypatch.setattr(trainer, "MIN_TUNE_STEPS", 1)
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    torch.manual_seed(0)
    trainer.Trainer(build_model(quick_config, bars), quick_config, log=print).fit(bars)
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 2.0}))  # would lose now
    lines: list[str] = []
    resumed = trainer.Trainer(build_model(quick_config, bars), quick_config, log=lines.append)
    resumed.fit(bars, resume=True)
    assert lines[0] == "cpu settings: channels_last (2.00x vs fp32 eager; checkpoint)"


def test_config_values_are_checked_and_round_trip(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bf16 to be true, false or null.*bf16='yes'"):
        TrainConfig(bf16="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"autotune to be true or false.*autotune=None"):
        TrainConfig(autotune=None)  # type: ignore[arg-type]
    config = TrainConfig(channels_last=True, compile=False, autotune=False)
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml())
    assert TrainConfig.from_yaml(path) == config
    assert TrainConfig.from_yaml(path).bf16 is None


def test_cli_flags() -> None:
    args = build_parser().parse_args(["train", "--no-autotune", "--channels-last", "--no-bf16"])
    assert (args.autotune, args.channels_last, args.bf16) == (False, True, False)
    assert "compile" not in vars(build_parser().parse_args(["train"]))  # omitted: automatic


def test_compile_is_tried_for_long_runs_and_must_pay_off(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = CpuSettings(compile=True)
    monkeypatch.setattr(torch, "compile", lambda model: model)  # no compiler: instant
    monkeypatch.setattr(autotune, "native_bf16", lambda: (False, "no"))
    monkeypatch.setattr(autotune, "time_candidates", fake_times({compiled: 0.5}))
    long_run = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=5000)
    assert long_run.settings == compiled and long_run.compile_seconds is not None
    short_run = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=10)
    assert short_run.settings == BASE and "too short" in short_run.skipped["compile"]


def test_a_failing_compiler_only_removes_the_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: nn.Module) -> nn.Module:
        raise RuntimeError("no C++ compiler\nmore")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    choice = tune(tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={}, run_steps=5000)
    assert choice.skipped["compile"] == "torch.compile failed: no C++ compiler"
    assert choice.settings == CL


class FakeRunner:
    """Each step costs `seconds` times the load of its round on a shared fake clock."""

    def __init__(self, settings: CpuSettings, seconds: float, loads: list[float]) -> None:
        self.settings, self.seconds, self.loads = settings, seconds, loads
        self.steps = 0

    def step(self) -> float:
        CLOCK[0] += self.seconds * self.loads[self.steps]  # slow steps: one per round
        self.steps += 1
        return 0.0


CLOCK = [0.0]


def test_timing_pairs_rounds_and_keeps_to_its_budget() -> None:
    # Load drifts for both; a spike hits only the candidate in round 2. The per-round
    # ratio to the baseline cancels the drift and the median drops the spike.
    base = FakeRunner(BASE, 0.5, [1, 2, 3, 4, 5])
    fast = FakeRunner(CL, 0.4, [1, 2, 30, 4, 5])
    times = autotune.time_candidates([base, fast], rounds=5, budget=1e9, clock=lambda: CLOCK[0])  # type: ignore[list-item]
    assert times[BASE] == pytest.approx(0.5 * 3)
    assert times[CL] / times[BASE] == pytest.approx(0.8)
    # Past the budget it stops after MIN_ROUNDS rounds.
    base, fast = FakeRunner(BASE, 0.5, [1] * 9), FakeRunner(CL, 0.4, [1] * 9)
    autotune.time_candidates([base, fast], rounds=9, budget=0.1, clock=lambda: CLOCK[0])  # type: ignore[list-item]
    assert base.steps == fast.steps == autotune.MIN_ROUNDS


def test_fixed_compile_is_applied_over_the_eager_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    choice = tune(
        tiny_model(), (1, 8, 8), batch_size=8, num_classes=3, fixed={"compile": True}, run_steps=10
    )
    assert choice.settings == CpuSettings(channels_last=True, compile=True)
    assert choice.speedup == pytest.approx(2.0)


def test_quick_runs_never_time_but_use_the_cache(
    bars: ImageDataset, quick_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_timing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a quick run spent time tuning")

    real_tune = autotune.tune
    monkeypatch.setattr(autotune, "tune", no_timing)
    monkeypatch.setattr(trainer, "MIN_TUNE_STEPS", 1)
    monkeypatch.setattr(autotune, "time_candidates", fake_times({CL: 0.5}))
    quick_config.epochs, quick_config.limit_batches = 1, 2
    lines: list[str] = []
    trainer.Trainer(build_model(quick_config, bars), quick_config, log=lines.append).fit(bars)
    untuned = autotune.untuned_default({}).name
    assert lines[0] == f"cpu settings: {untuned} (not tuned: limit_batches is set)"

    monkeypatch.setattr(autotune, "tune", real_tune)
    quick_config.limit_batches = None
    trainer.Trainer(build_model(quick_config, bars), quick_config, log=print).fit(bars)  # caches
    monkeypatch.setattr(autotune, "tune", no_timing)
    quick_config.fast_dev_run = True
    lines.clear()
    trainer.Trainer(build_model(quick_config, bars), quick_config, log=lines.append).fit(bars)
    assert lines[0] == "cpu settings: channels_last (2.00x vs fp32 eager; cached)"


def _store_many(path: Path, worker: int, count: int) -> None:
    for i in range(count):
        key = f"worker{worker}-{i}"
        autotune._store(path, key, {"name": key}, autotune.Choice(CL, "tuned", speedup=1.5))


def test_processes_storing_at_once_lose_no_entries(private_cache: Path) -> None:
    # The members of an ensemble tune side by side and each stores its decision.
    context = multiprocessing.get_context("fork")  # the workers only touch JSON
    workers = [context.Process(target=_store_many, args=(private_cache, w, 25)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
        assert p.exitcode == 0
    entries = autotune.load_cache(private_cache)
    assert sorted(entries) == sorted(f"worker{w}-{i}" for w in range(4) for i in range(25))
    assert all(entries[k]["key"] == {"name": k} for k in entries)
