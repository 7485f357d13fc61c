"""Accuracy against time budget: a recipe (`fmnist-fast`) trained for 2, 5, 15, 60 minutes.

Each (budget, seed) runs `cnnlab train --recipe R --time-budget B --seed S` in a
fresh process, one at a time (a run uses every core), and reads its metrics.json: test
accuracy, the training time (the trainer's clock over the epochs), and what the budget
paid for (training with validation, then the test evaluation). Prints one line per
budget: median and range of accuracy, median time spent against the budget, the CPU.

    python benchmarks/budget_curve.py --budgets 2m 5m --seeds 0 1 2 [--json F]
    python benchmarks/budget_curve.py --budgets 15m --seeds 0
    python benchmarks/budget_curve.py --recipe fmnist-best --budgets 60m --seeds 0
    python benchmarks/budget_curve.py --budgets 5m --seeds 0 -- --ensemble 1   # extra flags
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
from typing import Any

from cnnlab.core.cpu import cpu_kind


def run(recipe: str, budget: str, seed: int, runs_dir: str, extra: list[str]) -> dict[str, Any]:
    name = f"{recipe}-{budget}-seed{seed}"
    command = [
        sys.executable, "-m", "cnnlab.app.cli", "train", "--recipe", recipe,
        "--time-budget", budget, "--seed", str(seed), "--name", name, "--runs-dir", runs_dir,
        "--no-report", "--no-progress", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    metrics = json.loads((Path(runs_dir) / name / "metrics.json").read_text())
    members = [
        json.loads((Path(m["run_dir"]) / "metrics.json").read_text())
        for m in metrics.get("members", [])
    ]
    spent = [m["time_budget"]["spent_seconds"] for m in members or [metrics] if "time_budget" in m]
    return {
        "recipe": recipe,
        "budget": budget,
        "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "members": [m["test_accuracy"] for m in metrics.get("members", [])],
        "epochs": metrics["epochs"],
        "train_seconds": metrics["train_seconds"],
        "budget_spent_seconds": max(spent) if spent else None,
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fmnist-fast")
    parser.add_argument("--budgets", nargs="+", default=["2m", "5m", "15m", "60m"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-dir", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("extra", nargs="*", help="more `cnnlab train` flags, after --")
    args = parser.parse_args()
    cpu = cpu_kind()
    print(f"cpu: {cpu}", flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or tmp
        for budget in args.budgets:
            for seed in args.seeds:
                result = run(args.recipe, budget, seed, runs_dir, args.extra)
                results.append(result)
                print(json.dumps(result), flush=True)
    print(f"\n{args.recipe} by time budget on {cpu}")
    for budget in args.budgets:
        rows = [r for r in results if r["budget"] == budget]
        acc = [r["test_accuracy"] * 100 for r in rows]
        spent = [r["budget_spent_seconds"] or r["train_seconds"] for r in rows]
        print(
            f"{budget:>4}: accuracy median {statistics.median(acc):.2f}% "
            f"(range {min(acc):.2f}-{max(acc):.2f}, {len(rows)} seed(s)); "
            f"budget spent median {statistics.median(spent):.0f} s "
            f"(max {max(spent):.0f}); training {statistics.median(r['train_seconds'] for r in rows):.0f} s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "results": results}, indent=2))


if __name__ == "__main__":
    main()
