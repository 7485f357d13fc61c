"""Where a training step of the default model spends its time: torch.profiler on the CPU.

Profiles ``--steps`` training steps of resnet_mini (batch 128, 1x28x28, channels_last,
SGD Nesterov: the step `cnnlab bench` times, see cnnlab.engine.bench.make_train_step) after a
few warm-up steps, then prints the top ops by self CPU time and the share of each kind
of work. Every op is counted once, by its self time; an op called from inside
``optimizer.step`` or ``zero_grad`` counts as optimizer whatever its name. It also
prints the conv kernels' own FLOP/s (forward FLOPs over forward conv time, 2 x that
over backward conv time) next to the matmul peak, to separate slow kernels from time
spent outside them.

    .venv/bin/python benchmarks/profile_step.py [--steps 20] [--threads 2]

To see the kernels an AVX2-only CPU runs from a newer one, cap the instruction sets of
oneDNN and of PyTorch's own kernels. This changes the code paths, not the core, clock or
caches: a guide to where an AVX2 machine's time goes, not a measurement of one.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python benchmarks/profile_step.py
"""

from __future__ import annotations  # noqa: I001 (cnnlab loads first: see below)

import argparse
import collections
import os
import time

import cnnlab  # noqa: F401  (before torch: it sets GOMP_SPINCOUNT, read as torch loads)
import torch
from torch import nn
from torch.autograd.profiler_util import FunctionEvent

from cnnlab.core.cpu import cpu_kind
from cnnlab.engine.bench import forward_flops, make_train_step, matmul_peak
from cnnlab.inspect.summary import layer_macs
from cnnlab.models import create_model

INPUT_SHAPE = (1, 28, 28)  # Fashion-MNIST
BATCH = 128  # TrainConfig's batch_size
NUM_CLASSES = 10

# Kind of work -> substrings of aten op names, tried in this order (first match wins).
KINDS = {
    "conv backward": ("convolution_backward",),  # before forward: its name contains theirs
    "conv forward": ("mkldnn_convolution", "aten::_convolution", "aten::convolution", "conv2d"),
    "batch norm": ("batch_norm",),
    "pooling": ("pool", "aten::mean"),
    "linear + loss": ("addmm", "aten::mm", "softmax", "nll_loss", "cross_entropy"),
    "elementwise": (
        "relu", "threshold", "aten::add", "aten::mul", "aten::div", "aten::sub", "clamp",
        "aten::copy_", "aten::fill_", "aten::zero", "aten::sum", "aten::ones_like",
    ),
}  # fmt: skip
OPTIMIZER_SCOPES = ("Optimizer.step", "Optimizer.zero_grad")


def kind_of(event: FunctionEvent) -> str:
    """The kind of work one profiler event is, by its own name or an optimizer ancestor."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(OPTIMIZER_SCOPES):
            return "optimizer"
        parent = parent.cpu_parent
    if event.name.startswith(OPTIMIZER_SCOPES):
        return "optimizer"
    for kind, needles in KINDS.items():
        if any(n in event.name for n in needles):
            return kind
    return "other (autograd engine, views, allocation)"


def profile(steps: int, warmup: int) -> tuple[torch.profiler.profile, float, nn.Module]:
    """The profiler after ``steps`` profiled steps, their wall-clock seconds, and the model."""
    torch.manual_seed(0)
    model = create_model("resnet_mini", in_channels=INPUT_SHAPE[0], num_classes=NUM_CLASSES)
    step = make_train_step(model, INPUT_SHAPE, BATCH, NUM_CLASSES)
    for _ in range(warmup):  # oneDNN picks and caches its kernels on the first calls
        step()
    cpu = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=cpu, record_shapes=True) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - started
    return prof, wall, model


def conv_flops(model: nn.Module) -> dict[tuple[tuple[int, ...], tuple[int, ...]], int]:
    """Forward FLOPs per image of the model's convs, keyed by (input C,H,W, weight shape)."""
    flops: collections.Counter[tuple[tuple[int, ...], tuple[int, ...]]] = collections.Counter()

    def record(conv: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        key = (tuple(inputs[0].shape[1:]), tuple(conv.get_parameter("weight").shape))
        flops[key] += 2 * layer_macs(conv, output)

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks = [conv.register_forward_hook(record) for conv in convs]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *INPUT_SHAPE))
    for hook in hooks:
        hook.remove()
    return flops


def print_kinds(prof: torch.profiler.profile, wall: float, steps: int) -> dict[str, float]:
    """Share of each kind of work; returns seconds per kind."""
    # Self times add up to the profiled time of the main thread, which runs every op.
    seconds: collections.Counter[str] = collections.Counter()
    for event in prof.events():
        seconds[kind_of(event)] += event.self_cpu_time_total / 1e6
    total = sum(seconds.values())
    print(
        f"{steps} steps, {torch.get_num_threads()} threads: {wall:.2f} s wall "
        f"({BATCH * steps / wall:.0f} img/s, profiler on), {total:.2f} s in ops"
    )
    for kind, s in seconds.most_common():
        print(f"  {kind:<44} {s / steps * 1e3:7.1f} ms/step  {s / total:6.1%}")
    return dict(seconds)


def print_conv_layers(
    prof: torch.profiler.profile, model: nn.Module, steps: int, peak: float
) -> None:
    """Each conv shape's kernels: time per step and FLOP/s (forward x1, backward x2)."""
    flops = conv_flops(model)
    print(f"conv kernels by shape (input, weight): ms/step, GFLOP/s, % of {peak / 1e9:.0f}")
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key == "aten::mkldnn_convolution":
            x, w, multiple = event.input_shapes[0], event.input_shapes[1], 1
        elif event.key == "aten::convolution_backward":
            x, w, multiple = event.input_shapes[1], event.input_shapes[2], 2
        else:
            continue
        seconds = event.self_cpu_time_total / 1e6
        rate = flops[(tuple(x[1:]), tuple(w))] * BATCH * steps * multiple / seconds
        direction = "fwd" if multiple == 1 else "bwd"
        shape = f"{'x'.join(map(str, x[1:]))} * {'x'.join(map(str, w))}"
        print(
            f"  {direction} {shape:<24} {seconds / steps * 1e3:6.1f} ms  "
            f"{rate / 1e9:6.1f}  {rate / peak:4.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--top", type=int, default=15, help="ops in the table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "not capped")
    print(f"cpu: {cpu_kind()}; oneDNN ISA {isa}; torch {torch.backends.cpu.get_cpu_capability()}")
    prof, wall, model = profile(args.steps, args.warmup)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    seconds = print_kinds(prof, wall, args.steps)
    peak = matmul_peak()
    print_conv_layers(prof, model, args.steps, peak)
    flops = forward_flops(model, INPUT_SHAPE) * BATCH * args.steps
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    for kind, multiple in (("conv forward", 1), ("conv backward", 2)):
        rate = flops * multiple / max(seconds.get(kind, 0.0), 1e-9)
        print(f"  all {kind} kernels: {rate / 1e9:.1f} GFLOP/s = {rate / peak:.0%} of peak")
    achieved = flops * 3 / sum(seconds.values())
    print(f"  whole step: {achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.0%} of peak")


if __name__ == "__main__":
    main()
