"""Claim: GOMP_SPINCOUNT=30000 (cnnlab's default) avoids the OpenMP spin-wait collapse
that libgomp's default spin (300,000) shows on this 2-vCPU VM, at no loss of speed.

Each round runs the same training-step timing in fresh processes (the variable is
read when torch loads), alternating default and cnnlab's setting; it reports the
median and the worst round of each. Plain torch in the child: cnnlab is not imported.

    .venv/bin/python benchmarks/omp_spin.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = """
import time, torch
from torch import nn
torch.set_num_threads(2)
def block(i, o):
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
model = nn.Sequential(*block(1, 32), nn.MaxPool2d(2), *block(32, 32), *block(32, 64),
    nn.MaxPool2d(2), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
model = model.to(memory_format=torch.channels_last)
x = torch.rand(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (128,))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
def step():
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(25):
    step()
print(128 * 25 / (time.perf_counter() - start))
"""

SETTINGS = {"libgomp default (300000)": None, "cnnlab (30000)": "30000"}


def run(spincount: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if spincount is not None:
        env["GOMP_SPINCOUNT"] = spincount
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for r in range(args.rounds):
        for name, value in SETTINGS.items():
            rates[name].append(run(value))
        print(f"round {r + 1}: " + "  ".join(f"{n} {v[-1]:6.0f}" for n, v in rates.items()))
    result = {
        name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
        for name, v in rates.items()
    }
    for name, stats in result.items():
        print(f"{name:26s} median {stats['median']:6.0f} img/s  worst {stats['min']:6.0f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
