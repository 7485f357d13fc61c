"""Distributed data parallel on one machine: `cnnlab train --nproc 2` (two 1-thread
processes, gloo) against one process with 2 threads, same model, data, global batch and
epochs; training images per second and test accuracy, alternating sides, median of
``--rounds``.

    python benchmarks/ddp.py --rounds 3 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from cnnlab import data as datasets
from cnnlab.core.cpu import cpu_kind
from cnnlab.engine.config import TrainConfig
from cnnlab.runs import run_training


def one(runs: str, name: str, nproc: int, epochs: int, data: Any) -> dict[str, float]:
    config = TrainConfig(
        name=name, runs_dir=runs, model="resnet_mini", dataset="fashion-mnist", epochs=epochs,
        batch_size=256, lr=0.2, augment="flip", tta=False, progress=False, report=False,
        time_budget=None, autotune=False, nproc=nproc, threads=1 if nproc > 1 else 2, val_split=0.0,
    )  # fmt: skip
    metrics = run_training(config, data=data)
    rows = (Path(runs) / name / "history.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    rate_col = header.index("images_per_second")
    rates = [float(r.split(",")[rate_col]) for r in rows[1:]]
    # a rank's rate counts its own slice: the global rate is nproc times it
    return {
        "images_per_second": statistics.mean(rates) * nproc,
        "accuracy": metrics["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = datasets.load("fashion-mnist")
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as runs:
        for r in range(args.rounds):
            for nproc in (2, 1) if r % 2 == 0 else (1, 2):
                row = one(runs, f"r{r}-n{nproc}", nproc, args.epochs, data)
                results[nproc].append(row)
                print(json.dumps({"round": r, "nproc": nproc, **row}), flush=True)
    print(f"\n{cpu_kind()}; resnet_mini, Fashion-MNIST, batch 256 (global), {args.epochs} epoch(s), "
          f"fp32 eager; median (min-max) of {args.rounds} rounds")  # fmt: skip
    for nproc, label in ((1, "1 process x 2 threads"), (2, "2 processes x 1 thread (DDP, gloo)")):
        rate = [row["images_per_second"] for row in results[nproc]]
        acc = [row["accuracy"] for row in results[nproc]]
        print(f"{label:>36}: {statistics.median(rate):.0f} img/s ({min(rate):.0f}-{max(rate):.0f}), "
              f"test accuracy {statistics.median(acc):.2%}")  # fmt: skip
    ratio = [
        b["images_per_second"] / a["images_per_second"]
        for a, b in zip(results[1], results[2], strict=True)
    ]
    print(
        f"DDP / one process: {statistics.median(ratio):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratio)})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
