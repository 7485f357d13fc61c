"""Tests for cnnlab.engine.bench: the FLOP arithmetic against hand counts, and the CLI end to end."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from cnnlab.app.cli import main
from cnnlab.engine import bench
from cnnlab.engine.config import TrainConfig

# A model whose FLOPs are counted by hand below: conv 1->4 (3x3, pad 1) on 8x8, then linear.
TINY_SHAPE = (1, 8, 8)
TINY_FLOPS = 2 * (4 * 8 * 8 * 1 * 3 * 3 + 3 * 4 * 8 * 8)  # 2 x (conv MACs + linear MACs)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))


def test_matmul_peak_is_flops_over_the_fastest_matmul() -> None:
    # A clock that makes each timed matmul last 2 s: peak = 2 n^3 / 2 for the largest n.
    ticks = itertools.count(step=2.0)
    peak = bench.matmul_peak(sizes=(8, 32, 16), repeats=2, clock=lambda: next(ticks))
    assert peak == 2 * 32**3 / 2.0
    assert bench.matmul_flops(32) == 32 * 32 * (32 + 32)  # n^2 outputs, n mults + n adds each


def test_matmul_peak_measured_is_positive_and_finite() -> None:
    peak = bench.matmul_peak(sizes=(64, 128), repeats=2)
    assert math.isfinite(peak) and peak > 1e6  # any CPU does more than 1 MFLOP/s


def test_matmul_peak_refuses_empty_sizes() -> None:
    with pytest.raises(ValueError, match="received sizes=\\[\\]"):
        bench.matmul_peak(sizes=())


def test_native_bf16_reads_cpu_flags(tmp_path: object) -> None:
    from pathlib import Path

    cpuinfo = Path(str(tmp_path)) / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert bench.native_bf16(cpuinfo) == "avx512_bf16"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert bench.native_bf16(cpuinfo) is None


def test_training_throughput_and_fraction_match_hand_arithmetic() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    t = bench.training_throughput(model, TINY_SHAPE, 16, 3, steps=3, warmup=1, name="tiny")
    assert t.forward_flops == TINY_FLOPS
    assert len(t.step_seconds) == 3
    ips = 16 / sorted(t.step_seconds)[1]  # the median of three steps
    assert t.images_per_second == pytest.approx(ips) and ips > 0
    assert t.best_images_per_second == pytest.approx(16 / min(t.step_seconds))
    assert t.flops_per_second == pytest.approx(TINY_FLOPS * 3 * ips)
    assert t.channels_last  # the default config's layout
    result = bench.BenchResult(1, 5e9, None, None, t)
    assert result.fraction_of_peak == pytest.approx(TINY_FLOPS * 3 * ips / 5e9)
    best = 16 / min(t.step_seconds)
    assert result.best_fraction_of_peak == pytest.approx(TINY_FLOPS * 3 * best / 5e9)
    # Real steps: the optimizer moved every weight.
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bf16_bench_runs_under_autocast_and_reports_both_peaks() -> None:
    dtypes: list[torch.dtype] = []
    model = tiny_model()
    model.register_forward_hook(lambda module, inputs, out: dtypes.append(out.dtype))
    config = TrainConfig(bf16=True)
    t = bench.training_throughput(model, TINY_SHAPE, 4, 3, steps=1, warmup=0, config=config)
    # The FLOP count runs the model once in fp32; the training step ran its head in bf16.
    assert t.bf16 and dtypes == [torch.float32, torch.bfloat16]
    result = bench.BenchResult(1, 5e9, 2e10, "amx_bf16", t)
    assert result.fraction_of_bf16_peak == pytest.approx(t.flops_per_second / 2e10)
    assert result.fraction_of_peak == pytest.approx(t.flops_per_second / 5e9)
    text = bench.format_bench(result)
    assert "bf16 autocast" in text and "fraction of bf16 peak" in text
    fp32 = bench.training_throughput(tiny_model(), TINY_SHAPE, 4, 3, steps=1, warmup=0)
    plain = bench.BenchResult(1, 5e9, 2e10, "amx_bf16", fp32)
    assert plain.fraction_of_bf16_peak is None  # an fp32 run is not held to the bf16 peak
    assert "fraction of bf16 peak" not in bench.format_bench(plain)


def test_training_uses_the_default_configs_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.optim.Optimizer] = []
    real_step = torch.optim.SGD.step

    def spy(self: torch.optim.SGD, *args: object, **kwargs: object) -> object:
        seen.append(self)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    bench.training_throughput(tiny_model(), TINY_SHAPE, 4, 3, steps=1, warmup=0)
    cfg, group = TrainConfig(), seen[0].param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (cfg.momentum, cfg.nesterov)
    assert group["weight_decay"] == cfg.weight_decay


def test_bench_restores_the_thread_count() -> None:
    result = bench.bench("lenet5", batch_size=4, steps=1, warmup=0, threads=2, matmul_sizes=(32,))
    assert result.threads == 2 and torch.get_num_threads() == 1
    assert result.throughput.model == "lenet5" and result.throughput.input_shape == (1, 28, 28)


def test_cli_bench_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "MATMUL_SIZES", (64,))  # keep the peak quick
    argv = ["bench", "--model", "resnet_mini", "--batch-size", "8", "--steps", "2"]
    code = main([*argv, "--warmup", "1", "--threads", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["throughput"]["batch_size"] == 8
    assert report["throughput"]["input_shape"] == [1, 28, 28]
    assert report["fraction_of_peak"] == pytest.approx(
        report["training_flops_per_second"] / report["peak_fp32"]
    )
    assert report["training_flops_per_second"] == pytest.approx(
        report["throughput"]["forward_flops"] * 3 * report["images_per_second"]
    )


def test_cli_bench_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "MATMUL_SIZES", (64,))
    argv = ["bench", "--model", "lenet5", "--input", "1,32,32", "--batch-size", "4"]
    assert main([*argv, "--steps", "1", "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "peak fp32 matmul GFLOP/s" in out and "fraction of fp32 peak" in out
    assert "1x32x32" in out


@pytest.mark.parametrize("text", ["28x28", "1x28xA", "0x28x28", ""])
def test_cli_bad_input_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--input", text, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert f"received {text!r}" in err and "CxHxW" in err


def test_cli_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--model", "resnet_maxi"]) == 2
    assert "unknown model 'resnet_maxi'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "resnet_mini", "--input", "1x1x1"], "resnet_mini cannot take input 1x1x1"),
        (["--batch-size", "0"], "Expected --batch-size >= 1, received 0"),
        (["--warmup", "-1"], "Expected --warmup >= 0, received -1"),
    ],
)
def test_cli_bad_values_fail_before_timing(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_timing(*args: object, **kwargs: object) -> float:
        raise AssertionError("timed a matmul before checking the arguments")

    monkeypatch.setattr(bench, "matmul_peak", no_timing)
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err
