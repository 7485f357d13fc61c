"""Ensembles, measured: five members of a small network on Fashion-MNIST, combined and
grown every way cnnlab has, on the same training images.

Per seed: 10% of the training images are held out (they fit the weighted and stacked
rules); every method trains on the other 54,000.

- seeds: five members, independent seeds, side by side; then combined as the best single
  member, soft average, hard vote, weighted average (weights fitted on the held-out
  images) and stacking (logistic regression on the held-out members' probabilities);
- stacked (out of fold): the same five members, their meta-learner fitted instead on
  out-of-fold predictions of all 54,000 images (``--folds`` folds: per fold, five members
  with the same seeds train on the other folds and predict it; cnnlab.runs.ensemble);
- bagging: five members on bootstrap samples, soft average;
- boosting: five SAMME members one after another, weighted vote by alpha;
- snapshot: one run of five cosine cycles (the members' epochs end to end), soft average.

Diversity is the mean pairwise disagreement of the members' top classes on the test set.

    python benchmarks/ensembles.py --seeds 0 1 2 --epochs 2 --json runs/ensembles.json
    python benchmarks/ensembles.py --seeds 0 1 2 --epochs 1 --only seeds  # + out of fold
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import cnnlab
from cnnlab import data as datasets
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import evaluate_model
from cnnlab.ensemble import Ensemble, diversity, fit_combiner
from cnnlab.runs import run_training
from cnnlab.runs.ensemble import member_config, out_of_fold, plan
from cnnlab.runs.members import hold_out
from cnnlab.transfer.ensembles import fit_rule

SMALL = {"widths": [16, 32, 64], "blocks": [1, 1, 1]}  # ~80k parameters
ROWS = (
    "best member",
    "soft average",
    "vote",
    "weighted",
    "stacked",
    "stacked (out of fold)",
    "bagging",
    "boosting",
    "snapshot",
)


def base_config(seed: int, epochs: int, runs: str, name: str) -> TrainConfig:
    return TrainConfig(
        name=name, runs_dir=runs, model="resnet_mini", model_args=SMALL, epochs=epochs,
        batch_size=256, lr=0.4, label_smoothing=0.2, augment="altflip", tta=False,
        seed=seed, ensemble=5, report=False, progress=False,
    )  # fmt: skip


def accuracy(model: torch.nn.Module, data: Any) -> float:
    return float(evaluate_model(model.eval(), data.x_test, data.targets_test)["accuracy"])


def one_seed(
    seed: int, epochs: int, runs: str, folds: int, only: str | None
) -> dict[str, dict[str, float]]:
    full = datasets.load("fashion-mnist")
    seeds_config = dataclasses.replace(
        base_config(seed, epochs, runs, f"seeds-{seed}"), ensemble_combine="stacked", val_split=0.1
    )
    train, holdout = hold_out(seeds_config, full, "stacked")
    assert holdout is not None
    out: dict[str, dict[str, float]] = {}
    # 1. Independent seeds, and every rule over the same five members.
    started = time.perf_counter()
    metrics = run_training(seeds_config, data=full)
    seconds = time.perf_counter() - started
    stacked = cnnlab.load(Path(runs) / f"seeds-{seed}")
    members = list(stacked.members)
    record = cnnlab.core.records.record_of(stacked)
    stats = {"mean": record.mean, "std": record.std}  # type: ignore[union-attr]
    best = max(m["test_accuracy"] for m in metrics["members"])
    spread = diversity(stacked, full.x_test, stats)
    out["best member"] = {"accuracy": best, "seconds": seconds}
    for rule, row in (("softmax", "soft average"), ("vote", "vote"), ("weighted", "weighted")):
        ensemble = Ensemble(members, combine=rule)
        if rule == "weighted":
            fit_combiner(ensemble, holdout.x_train, holdout.targets_train["label"], stats)
        out[row] = {
            "accuracy": accuracy(ensemble, full),
            "seconds": seconds,
            "disagreement": spread,
        }
    out["stacked"] = {
        "accuracy": metrics["test_accuracy"],
        "seconds": seconds,
        "disagreement": spread,
    }
    # 2. The same members' stacker, fitted out of fold on the 54,000 instead.
    started = time.perf_counter()
    configs = [member_config(seeds_config, i, 1, parallel=True) for i in range(5)]
    configs = [dataclasses.replace(c, val_split=0.0) for c in configs]  # as in the run
    folded = dataclasses.replace(seeds_config, ensemble_folds=folds)
    probs, labels = out_of_fold(folded, configs, train, resume=False, processes=plan(folded)[0])
    ensemble = Ensemble(members, combine="stacked")
    fitted = fit_rule(ensemble, probs, labels)
    out["stacked (out of fold)"] = {
        "accuracy": accuracy(ensemble, full), "disagreement": spread, "C": fitted["C"],
        "seconds": seconds + time.perf_counter() - started,
    }  # fmt: skip
    if only == "seeds":
        print(json.dumps({"seed": seed, **{k: v["accuracy"] for k, v in out.items()}}), flush=True)
        return out
    # 3. Bagging, boosting, snapshots: the same 54,000 training images.
    for sampling, row in (
        ("bootstrap", "bagging"),
        ("boosting", "boosting"),
        ("snapshot", "snapshot"),
    ):
        config = dataclasses.replace(
            base_config(seed, epochs, runs, f"{row}-{seed}"), ensemble_sampling=sampling,
            epochs=epochs * 5 if sampling == "snapshot" else epochs,
        )  # fmt: skip
        started = time.perf_counter()
        m = run_training(config, data=train)
        model = cnnlab.load(Path(runs) / config.name)
        out[row] = {
            "accuracy": m["test_accuracy"], "seconds": time.perf_counter() - started,
            "disagreement": diversity(model, full.x_test, stats), "members": len(model.members),
        }  # fmt: skip
    print(json.dumps({"seed": seed, **{k: v["accuracy"] for k, v in out.items()}}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="per member (snapshot: x5)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--folds", type=int, default=3, help="for the out-of-fold stacker")
    parser.add_argument(
        "--only", choices=["seeds"], help="seeds: only the rows of the seeds' five members"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        results = [one_seed(s, args.epochs, runs, args.folds, args.only) for s in args.seeds]
    print(f"\nFashion-MNIST test accuracy, 5 members; median (min-max) over seeds {args.seeds}")
    summary: dict[str, Any] = {}
    for row in ROWS:
        if row not in results[0]:
            continue
        acc = [r[row]["accuracy"] for r in results]
        sec = [r[row]["seconds"] for r in results]
        dis = [r[row].get("disagreement", float("nan")) for r in results]
        summary[row] = {"accuracy": acc, "seconds": sec, "disagreement": dis}
        print(
            f"{row:>13}  {statistics.median(acc):.2%} ({min(acc):.2%}-{max(acc):.2%})  "
            f"training {statistics.median(sec):.0f} s  disagreement {statistics.median(dis):.3f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"seeds": args.seeds, "epochs": args.epochs, "results": summary}, indent=1)
        )


if __name__ == "__main__":
    main()
