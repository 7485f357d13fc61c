"""Question (issue 6): does torch.compile make a `resnet_mini` training step faster on
this CPU?

Times the median training step (`cnnlab bench`'s: batch 128, channels_last, 2 threads,
one fixed random batch) eager, then compiled (the first compiled step, which compiles,
is timed on its own), then both again, so drift in machine load shows up as a
disagreement between rounds.

    .venv/bin/python benchmarks/compile_step.py [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import cnnlab
from cnnlab.engine.bench import make_train_step

BATCH = 128


def median_step(step: Callable[[], None], steps: int) -> float:
    """Median seconds of ``steps`` calls of ``step`` after 3 untimed ones."""
    for _ in range(3):
        step()
    return statistics.median(timed(step) for _ in range(steps))


def timed(step: Callable[[], None]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model: nn.Module = cnnlab.create_model("resnet_mini", num_classes=10)
    # `cnnlab bench`'s step: the default TrainConfig's optimizer and loss, NHWC.
    eager = make_train_step(model, (1, 28, 28), BATCH, 10)
    compiled = make_train_step(torch.compile(model), (1, 28, 28), BATCH, 10)
    print(f"eager     {1000 * median_step(eager, args.steps):.1f} ms/step", flush=True)
    print(f"first compiled step (compiles) {timed(compiled):.1f} s", flush=True)
    print(f"compiled  {1000 * median_step(compiled, args.steps):.1f} ms/step", flush=True)
    print(f"eager     {1000 * median_step(eager, args.steps):.1f} ms/step", flush=True)
    print(f"compiled  {1000 * median_step(compiled, args.steps):.1f} ms/step", flush=True)


if __name__ == "__main__":
    main()
