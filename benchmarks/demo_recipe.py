"""Claim: `make demo` (the default TrainConfig) reaches >=93.0% Fashion-MNIST test
accuracy with <=5 minutes of training on this 2-core machine, median of 3 seeds.

Runs the same code path as `cnnlab train` (cnnlab.runs.run_training) with the
default config and seeds 0, 1, 2, one after another; training time is the sum of the
epochs' own clocks (the loop, not data loading, test evaluation or saving).

    .venv/bin/python benchmarks/demo_recipe.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from cnnlab import TrainConfig
from cnnlab.data import load
from cnnlab.runs import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    data = load("fashion-mnist")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            config = TrainConfig(seed=seed, runs_dir=tmp, name=f"seed{seed}", progress=False)
            metrics = run_training(config, data=data)
            runs.append(metrics)
            print(
                f"seed {seed}: test accuracy {metrics['test_accuracy']:.4f}, "
                f"training {metrics['train_seconds']:.0f} s",
                flush=True,
            )
    accuracy = [m["test_accuracy"] for m in runs]
    seconds = [m["train_seconds"] for m in runs]
    result = {
        "accuracy_median": statistics.median(accuracy),
        "accuracy": accuracy,
        "train_seconds_median": statistics.median(seconds),
        "train_seconds": seconds,
        "epochs": runs[0]["epochs"],
        "model": runs[0]["model"],
    }
    print(
        f"median test accuracy {result['accuracy_median']:.4f} "
        f"(min {min(accuracy):.4f}); median training time {result['train_seconds_median']:.0f} s "
        f"(max {max(seconds):.0f} s)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
