"""`cnnlab bench`: this machine's matmul peak FLOP/s, and how much of it training a model reaches.

Both numbers come from the same process, with the same threads, one after the other:

- Peak: the best rate of square ``n x n @ n x n`` matmuls (``2 * n**3`` FLOPs each) over
  a few sizes and repeats; the largest sizes saturate the cores' vector units.
- Training: real training steps (forward, loss, backward, optimizer step) on one fixed
  random batch, with the default TrainConfig's optimizer, loss and memory format. Data
  loading is left out: this measures compute only. Training FLOP/s = forward FLOPs per
  image (MACs x 2, from :func:`cnnlab.inspect.summary.summary`) x 3 x images/second; the
  3 is the usual rule that backward costs twice the forward (input and weight grads).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnlab.core.cpu import native_bf16, num_threads, uses_channels_last
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.engine.config import TrainConfig

if TYPE_CHECKING:  # torch loads only when a bench runs: `cnnlab --help` stays instant
    import torch
    from torch import nn

# n of the square matmuls: small ones run from cache, large ones saturate 16 cores.
MATMUL_SIZES = (256, 512, 1024, 2048)
MATMUL_REPEATS = 5  # timed matmuls per size; the best counts (the machine may be shared)


@dataclass
class Throughput:
    """Timed training steps of one model at one batch size."""

    model: str
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    batch_size: int
    forward_flops: int  # per image: 2 x the summary's conv and linear MACs
    step_seconds: list[float]  # wall time of each timed step
    channels_last: bool  # NHWC activations and weights, as the Trainer runs them
    bf16: bool = False  # forward and loss under bf16 autocast, as the Trainer's bf16 setting

    @property
    def images_per_second(self) -> float:
        # The median step: robust to the odd step another process slowed down.
        return self.batch_size / statistics.median(self.step_seconds)

    @property
    def best_images_per_second(self) -> float:
        # The fastest step: what the machine does when nothing else runs, as the peak is.
        return self.batch_size / min(self.step_seconds)

    @property
    def flops_per_second(self) -> float:
        """Training FLOP/s: forward + backward (2 x forward) per image, times images/s."""
        return self.forward_flops * 3 * self.images_per_second


@dataclass
class BenchResult:
    """Peak matmul rates and one model's training throughput, measured together."""

    threads: int
    peak_fp32: float  # FLOP/s
    peak_bf16: float | None  # FLOP/s; None when the CPU has no native bf16
    bf16_isa: str | None  # the cpuinfo flag that makes bf16 native, e.g. "avx512_bf16"
    throughput: Throughput

    @property
    def fraction_of_peak(self) -> float:
        """Training FLOP/s as a fraction of the fp32 matmul peak."""
        return self.throughput.flops_per_second / self.peak_fp32

    @property
    def best_fraction_of_peak(self) -> float:
        """The fastest step's training FLOP/s over the peak: both best cases."""
        t = self.throughput
        return t.best_images_per_second / t.images_per_second * self.fraction_of_peak

    @property
    def fraction_of_bf16_peak(self) -> float | None:
        """Training FLOP/s over the bf16 matmul peak, for a bf16 run on a CPU that has one."""
        if not self.throughput.bf16 or self.peak_bf16 is None:
            return None
        return self.throughput.flops_per_second / self.peak_bf16

    def to_dict(self) -> dict[str, Any]:
        t = self.throughput
        return {
            **dataclasses.asdict(self),
            "images_per_second": t.images_per_second,
            "best_images_per_second": t.best_images_per_second,
            "training_flops_per_second": t.flops_per_second,
            "fraction_of_peak": self.fraction_of_peak,
            "best_fraction_of_peak": self.best_fraction_of_peak,
            "fraction_of_bf16_peak": self.fraction_of_bf16_peak,
        }


def matmul_flops(n: int) -> int:
    """FLOPs of one ``n x n @ n x n`` matmul: n**2 outputs, each n multiplies and n adds."""
    return 2 * n**3


def matmul_peak(
    dtype: torch.dtype | None = None,
    sizes: Sequence[int] = MATMUL_SIZES,
    repeats: int = MATMUL_REPEATS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The best FLOP/s of ``n x n`` matmuls in ``dtype`` (default fp32), n in ``sizes``."""
    import torch

    if not sizes or min(sizes) < 1 or repeats < 1:
        raise ConfigError(
            f"Expected sizes >= 1 and repeats >= 1, received sizes={list(sizes)}, repeats={repeats}"
        )
    dtype = dtype or torch.float32
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        out = torch.mm(a, b)  # untimed: allocates out and warms the kernel
        for _ in range(repeats):
            started = clock()
            torch.mm(a, b, out=out)
            best = max(best, matmul_flops(n) / max(clock() - started, 1e-12))
    return best


def forward_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs of one image: 2 x the conv and linear MACs the summary counts."""
    from cnnlab.inspect.summary import summary

    return 2 * sum(row.macs for row in summary(model, input_shape))


def make_train_step(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    num_classes: int,
    config: TrainConfig | None = None,
) -> Callable[[], None]:
    """One Trainer-like training step on a fixed random batch, as a function to call.

    The model is put in training mode and in NHWC unless ``config.channels_last`` is
    False, as the Trainer does; the optimizer and loss come from ``config`` (default
    ``TrainConfig()``), and so does bf16 autocast (``config.bf16`` True; off otherwise).
    """
    import torch

    from cnnlab.engine.optim import build_optimizer
    from cnnlab.engine.step import TrainStep
    from cnnlab.tasks import get_task

    cfg = config or TrainConfig()
    channels_last = uses_channels_last(cfg.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
    x = torch.randn(batch_size, *input_shape).contiguous(memory_format=memory_format)
    targets = {"label": torch.randint(0, num_classes, (batch_size,))}
    task = get_task("classify", label_smoothing=cfg.label_smoothing)
    optimizer = build_optimizer(model.parameters(), cfg)
    model.train()
    train_step = TrainStep(model, task, optimizer, bf16=bool(cfg.bf16))

    def step() -> None:
        train_step(x, targets)

    return step


def training_throughput(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    num_classes: int,
    *,
    steps: int = 20,
    warmup: int = 5,
    config: TrainConfig | None = None,
    name: str = "",
) -> Throughput:
    """Time ``steps`` training steps of ``model`` after ``warmup`` untimed ones.

    Args:
        model: maps (B, C, H, W) to (B, num_classes) logits; trained in place.
        input_shape: (C, H, W) of one image.
        batch_size: images per step.
        num_classes: range of the random labels.
        steps: timed steps.
        warmup: untimed steps first (oneDNN picks and caches its kernels here).
        config: optimizer, loss and memory format as the Trainer would use them
            (default: ``TrainConfig()``).
        name: what to call the model in the result.
    """
    if steps < 1 or warmup < 0 or batch_size < 1:
        raise ConfigError(
            f"Expected steps >= 1, warmup >= 0 and batch_size >= 1, "
            f"received steps={steps}, warmup={warmup}, batch_size={batch_size}"
        )
    cfg = config or TrainConfig()
    flops = forward_flops(model, input_shape)
    step = make_train_step(model, input_shape, batch_size, num_classes, cfg)
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return Throughput(
        name or type(model).__name__, input_shape, batch_size, flops, seconds,
        uses_channels_last(cfg.channels_last), bool(cfg.bf16),
    )  # fmt: skip


def bench(
    model: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    batch_size: int | None = None,
    num_classes: int | None = None,
    *,
    steps: int = 20,
    warmup: int = 5,
    threads: int | None = None,
    matmul_sizes: Sequence[int] | None = None,
    bf16: bool = False,
) -> BenchResult:
    """Measure the matmul peaks, then a registered model's training throughput.

    Defaults are the default training run: ``TrainConfig()``'s model and batch size,
    and its dataset's image shape and class count (resnet_mini, 1x28x28, 128, 10).
    ``bf16=True`` times the steps under bf16 autocast, as the trainer runs them where its
    tuner picks bf16; FLOP/s are then reported against both peaks.

    Raises:
        UnknownNameError: ``model`` is not registered.
        ShapeMismatchError: the model cannot take ``input_shape``.
    """
    import torch

    from cnnlab import data as datasets
    from cnnlab.models import create_model, model_info

    cfg = TrainConfig(bf16=bf16)
    dataset = datasets.describe(cfg.dataset)
    name = model or cfg.model
    c, h, w = input_shape or dataset["input_shape"]
    info = model_info(name)  # an unknown name fails here, before any timing
    classes = dataset["num_classes"] if num_classes is None else num_classes
    args: dict[str, Any] = {"in_channels": c, "num_classes": classes}
    if info.fixed_input:
        args["input_size"] = h if h == w else [h, w]
    torch.manual_seed(cfg.seed)
    net = create_model(name, **args)
    try:  # one sample through the model: a shape it cannot take fails before any timing
        forward_flops(net, (c, h, w))
    except RuntimeError as e:
        raise ShapeMismatchError(
            f"{name} cannot take input {c}x{h}x{w}: {str(e).splitlines()[0]}"
        ) from None
    isa = native_bf16()
    with num_threads(threads) as used:
        sizes = matmul_sizes or MATMUL_SIZES
        peak_fp32 = matmul_peak(torch.float32, sizes)
        peak_bf16 = matmul_peak(torch.bfloat16, sizes) if isa else None
        throughput = training_throughput(
            net, (c, h, w), cfg.batch_size if batch_size is None else batch_size, classes,
            steps=steps, warmup=warmup, config=cfg, name=name,
        )  # fmt: skip
    return BenchResult(used, peak_fp32, peak_bf16, isa, throughput)


def format_bench(result: BenchResult) -> str:
    """The small table `cnnlab bench` prints."""
    t = result.throughput
    bf16 = (
        f"{result.peak_bf16 / 1e9:,.1f}  ({result.bf16_isa})"
        if result.peak_bf16 is not None
        else "not supported (no native bf16 on this CPU)"
    )
    shape = "x".join(map(str, t.input_shape))
    layout = "channels_last" if t.channels_last else "NCHW"
    precision = "bf16 autocast" if t.bf16 else "fp32"
    steps, best = len(t.step_seconds), f"{t.best_images_per_second:,.0f}"
    best_fraction = f"{result.best_fraction_of_peak:.1%}"
    rows = [
        ("threads", f"{result.threads}"),
        ("peak fp32 matmul GFLOP/s", f"{result.peak_fp32 / 1e9:,.1f}"),
        ("peak bf16 matmul GFLOP/s", bf16),
        ("model", f"{t.model}  input {shape}, batch {t.batch_size}, {precision}, {layout}"),
        ("forward MFLOPs / image", f"{t.forward_flops / 1e6:,.2f}"),
        ("training images / s", f"{t.images_per_second:,.0f}  median of {steps}, best {best}"),
        ("training GFLOP/s (fwd x 3)", f"{t.flops_per_second / 1e9:,.2f}"),
        ("fraction of fp32 peak", f"{result.fraction_of_peak:.1%}  best step {best_fraction}"),
    ]
    if result.fraction_of_bf16_peak is not None:
        rows.append(("fraction of bf16 peak", f"{result.fraction_of_bf16_peak:.1%}"))
    return "\n".join(f"{label:<28} {value}" for label, value in rows)
