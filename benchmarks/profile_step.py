"""Where a training step of the default model spends its time: torch.profiler on the CPU.

Profiles ``--steps`` training steps of resnet_mini (batch 128, 1x28x28, channels_last,
SGD Nesterov: the step `cnnlab bench` times, see cnnlab.bench.make_train_step) after a
few warm-up steps, then prints the top ops by self CPU time and the share of each kind
of work. Every op is counted once, by its self time; an op called from inside
``optimizer.step`` or ``zero_grad`` counts as optimizer whatever its name. It also
prints the conv kernels' own FLOP/s (forward FLOPs over forward conv time, 2 x that
over backward conv time) next to the matmul peak, to separate slow kernels from time
spent outside them.

    .venv/bin/python benchmarks/profile_step.py [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from torch.autograd.profiler_util import FunctionEvent

from cnnlab.bench import forward_flops, make_train_step, matmul_peak
from cnnlab.models import create_model

INPUT_SHAPE = (1, 28, 28)  # Fashion-MNIST
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


def profile(steps: int, warmup: int) -> tuple[torch.profiler.profile, float]:
    """The profiler after ``steps`` profiled steps, and their wall-clock seconds."""
    torch.manual_seed(0)
    model = create_model("resnet_mini", in_channels=INPUT_SHAPE[0], num_classes=NUM_CLASSES)
    step = make_train_step(model, INPUT_SHAPE, 128, NUM_CLASSES)
    for _ in range(warmup):  # oneDNN picks and caches its kernels on the first calls
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - started
    return prof, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--top", type=int, default=15, help="ops in the table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    prof, wall = profile(args.steps, args.warmup)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))

    # Self times add up to the profiled time of the main thread, which runs every op.
    seconds: collections.Counter[str] = collections.Counter()
    for event in prof.events():
        seconds[kind_of(event)] += event.self_cpu_time_total / 1e6
    total = sum(seconds.values())
    print(
        f"{args.steps} steps, {torch.get_num_threads()} threads: {wall:.2f} s wall "
        f"({128 * args.steps / wall:.0f} img/s, profiler on), {total:.2f} s in ops"
    )
    for kind, s in seconds.most_common():
        print(f"  {kind:<44} {s / args.steps * 1e3:7.1f} ms/step  {s / total:6.1%}")

    flops = forward_flops(create_model("resnet_mini"), INPUT_SHAPE) * 128 * args.steps
    peak = matmul_peak()
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    for kind, multiple in (("conv forward", 1), ("conv backward", 2)):
        rate = flops * multiple / max(seconds[kind], 1e-9)
        print(f"  {kind} kernels: {rate / 1e9:.1f} GFLOP/s = {rate / peak:.0%} of peak")
    achieved = flops * 3 / total
    print(f"  whole step: {achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.0%} of peak")


if __name__ == "__main__":
    main()
