"""Question (issue 6): does torch.compile make a `resnet_mini` training step faster on
this CPU?

Times the median SGD step (batch 128, channels_last, 2 threads, one fixed random batch)
eager, then compiled (the first compiled step, which compiles, is timed on its own),
then both again, so drift in machine load shows up as a disagreement between rounds.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = cnnlab.create_model("resnet_mini", num_classes=10)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.2)
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def step(forward: Callable[[torch.Tensor], torch.Tensor]) -> float:
        started = time.perf_counter()
        loss = criterion(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    def median_step(forward: Callable[[torch.Tensor], torch.Tensor]) -> float:
        for _ in range(3):
            step(forward)
        return statistics.median(step(forward) for _ in range(args.steps))

    print(f"eager     {1000 * median_step(model):.1f} ms/step", flush=True)
    compiled = torch.compile(model)
    print(f"first compiled step (compiles) {step(compiled):.1f} s", flush=True)
    print(f"compiled  {1000 * median_step(compiled):.1f} ms/step", flush=True)
    print(f"eager     {1000 * median_step(model):.1f} ms/step", flush=True)
    print(f"compiled  {1000 * median_step(compiled):.1f} ms/step", flush=True)


if __name__ == "__main__":
    main()
