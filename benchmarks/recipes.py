"""Time-to-accuracy of a shipped recipe: train it once per seed, report medians and spread.

Each seed runs `cnnlab train --recipe NAME --seed S` in a fresh process (so each pays its
own start-up, as a user would) and reads the run's metrics.json. "Training time" is the
trainer's own clock over the epochs (train_seconds), the figure the recipe's claim is
about; the whole command's wall time is printed beside it.

    python benchmarks/recipes.py fmnist-fast --seeds 0 1 2 [--json runs/recipe.json]
    python benchmarks/recipes.py --seeds 0 1 2 fmnist-fast -- --lr 0.4   # extra train flags
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_seed(recipe: str, seed: int, runs_dir: str, extra: list[str]) -> dict[str, float]:
    name = f"{recipe}-seed{seed}"
    command = [
        sys.executable, "-m", "cnnlab.app.cli", "train", "--recipe", recipe, "--seed", str(seed),
        "--name", name, "--runs-dir", runs_dir, "--no-report", "--no-progress", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    metrics = json.loads((Path(runs_dir) / name / "metrics.json").read_text())
    return {
        "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("extra", nargs="*", help="more `cnnlab train` flags, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs_dir:
        rows = [run_seed(args.recipe, s, runs_dir, args.extra) for s in args.seeds]
    print(f"\n{args.recipe}: seed  test accuracy  training s  wall s")
    for r in rows:
        print(
            f"  {r['seed']:>4}  {r['test_accuracy']:.2%}  {r['train_seconds']:10.0f}  "
            f"{r['wall_seconds']:6.0f}"
        )
    summary = {
        key: {
            "median": statistics.median(r[key] for r in rows),
            "min": min(r[key] for r in rows),
            "max": max(r[key] for r in rows),
        }
        for key in ("test_accuracy", "train_seconds", "wall_seconds")
    }
    acc, secs = summary["test_accuracy"], summary["train_seconds"]
    print(
        f"median accuracy {acc['median']:.2%} (min {acc['min']:.2%}, max {acc['max']:.2%}); "
        f"median training {secs['median']:.0f} s (max {secs['max']:.0f} s)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"recipe": args.recipe, "runs": rows, "summary": summary}, indent=2)
        )


if __name__ == "__main__":
    main()
