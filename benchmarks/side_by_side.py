"""Question (issue 6): how many images/second do the cores give one training process,
and how many do two independent 1-thread processes give together?

This is why `--ensemble 2` (cnnlab.runs.ensemble) trains its members side by side: if
one process on 1 thread is nearly as fast as on 2, a second process on the other core is
an almost free second model. Measured on the default model (`resnet_mini`, NHWC, batch
256, `cnnlab bench`'s training step on a fixed random batch), alternating each round:

- A: one process, 2 threads;
- B: one process, 1 thread;
- C: two processes of 1 thread at the same time (their images/second added up).

    .venv/bin/python benchmarks/side_by_side.py [--rounds 3] [--steps 40] [--bf16]

With ``--bf16`` every side trains under bf16 autocast (what the tuner picks on AMX CPUs).
It prints each side's images/second per round, then medians and the ratios C/A and B/A.
"""

from __future__ import annotations

import argparse
import statistics
import time
from multiprocessing import get_context
from multiprocessing.queues import Queue
from typing import Any

import torch

import cnnlab
from cnnlab.engine.bench import make_train_step
from cnnlab.engine.config import TrainConfig

BATCH = 256
WARMUP = 5  # untimed steps: oneDNN picks its kernels on the first calls


def images_per_second(threads: int, steps: int, bf16: bool, start: Any = None) -> float:
    """Train ``steps`` steps of resnet_mini on ``threads`` threads; images/second."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet_mini", num_classes=10)
    step = make_train_step(model, (1, 28, 28), BATCH, 10, TrainConfig(bf16=bf16))
    for _ in range(WARMUP):
        step()
    if start is not None:  # side by side: both processes start timing together
        start.wait()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return BATCH * steps / (time.perf_counter() - began)


def _worker(steps: int, bf16: bool, start: Any, out: Queue[float]) -> None:
    out.put(images_per_second(1, steps, bf16, start))


def side_by_side(steps: int, bf16: bool) -> float:
    """Two 1-thread processes at once: the sum of their images/second."""
    context = get_context("spawn")
    start, out = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_worker, args=(steps, bf16, start, out)) for _ in range(2)]
    for w in workers:
        w.start()
    rates = [out.get() for _ in workers]
    for w in workers:
        w.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast")
    args = parser.parse_args()
    sides: dict[str, list[float]] = {"A 1 process x 2 threads": [], "B 1 process x 1 thread": []}
    sides["C 2 processes x 1 thread"] = []
    for r in range(args.rounds):
        rates = [
            images_per_second(2, args.steps, args.bf16),
            images_per_second(1, args.steps, args.bf16),
            side_by_side(args.steps, args.bf16),
        ]
        for seen, rate in zip(sides.values(), rates, strict=True):
            seen.append(rate)
        shown = zip(sides, rates, strict=True)
        print(f"round {r + 1}: " + "  ".join(f"{name[0]} {rate:,.0f}" for name, rate in shown))
    medians = {name: statistics.median(seen) for name, seen in sides.items()}
    a, b, c = medians.values()
    print(f"\nresnet_mini, batch {BATCH}, {'bf16 autocast' if args.bf16 else 'fp32'}, NHWC:")
    for name, value in medians.items():
        print(f"  {name}: median {value:,.0f} img/s")
    print(f"  B/A {b / a:.2f}x   C/A {c / a:.2f}x (two models' images/s vs one process's)")


if __name__ == "__main__":
    main()
