"""Claim: cnnlab.layers.Dropout's forward+backward is >=2x torch.nn.Dropout's on the CPU.

Both run on the activations the seed-000 network drops out (batch 128, channels_last):
(32, 13, 13) and (64, 5, 5) at p=0.25, (512,) at p=0.5. The sides alternate per repeat;
we report the median time of each and the median per-repeat ratio.

    .venv/bin/python benchmarks/dropout.py [--repeats 15] [--iters 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.layers import Dropout

SHAPES = [((128, 32, 13, 13), 0.25), ((128, 64, 5, 5), 0.25), ((128, 512), 0.5)]


def timed(layers: list[nn.Module], inputs: list[torch.Tensor], iters: int) -> float:
    """Seconds per iteration of forward + backward through every layer."""

    def once() -> None:
        for layer, x in zip(layers, inputs, strict=True):
            layer(x).sum().backward()

    for _ in range(3):
        once()
    started = time.perf_counter()
    for _ in range(iters):
        once()
    return (time.perf_counter() - started) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    inputs = []
    for shape, _ in SHAPES:
        x = torch.randn(shape)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        inputs.append(x.requires_grad_(True))
    make: dict[str, Callable[[float], nn.Module]] = {"torch": nn.Dropout, "cnnlab": Dropout}
    sides = {name: [f(p).train() for _, p in SHAPES] for name, f in make.items()}
    times: dict[str, list[float]] = {"torch": [], "cnnlab": []}
    for _ in range(args.repeats):
        for name, layers in sides.items():
            times[name].append(timed(layers, inputs, args.iters))
    ratios = [t / c for t, c in zip(times["torch"], times["cnnlab"], strict=True)]
    for name, values in times.items():
        print(f"{name:6s} median {1000 * statistics.median(values):.2f} ms per step's dropouts")
    print(
        f"ratio torch/cnnlab: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {args.repeats} repeats"
    )


if __name__ == "__main__":
    main()
