"""Detection ensembles, measured: three FCOS members of the ``nuclei-detect`` recipe
(stardist's real nuclei image, tested on the held-out quadrant), their boxes combined by
each rule cnnlab has, on the same test tiles.

Per seed, ``cnnlab.runs.run_training`` trains three members side by side (seeds
3s, 3s+1, 3s+2); each member is then scored alone, and the three are combined as:

- ``mean``: the members' raw per-prior outputs averaged, then decoded and NMS'd once;
- ``nms``: every member's candidates pooled, then one class-aware NMS;
- ``wbf``: each member's own detections, then weighted boxes fusion (IoU = the NMS
  threshold, cnnlab.tasks.detect); the default rule of the detect task.

COCO numbers by cnnlab's scorer (equal to pycocotools', tests/tasks/test_coco_eval.py).

    python benchmarks/detect_ensemble.py --seeds 0 1 2 --json runs/detect_ensemble.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import cnnlab
from cnnlab import data as datasets
from cnnlab.core.cpu import cpu_kind
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import evaluate_model
from cnnlab.engine.recipes import recipe_values
from cnnlab.ensemble import Ensemble
from cnnlab.runs import run_training

MEMBERS = 3
RULES = ("mean", "nms", "wbf")
KEYS = ("map", "map_50")


def one_seed(seed: int, runs: str) -> dict[str, dict[str, float]]:
    values = recipe_values("nuclei-detect") | {
        "seed": seed, "runs_dir": runs, "name": f"seed{seed}", "ensemble": MEMBERS,
        "report": False, "progress": False,
    }  # fmt: skip
    config = TrainConfig.from_dict(values)
    data = datasets.load(config.dataset, **config.dataset_args)
    run_training(config, data=data)
    members = [cnnlab.load(config.run_dir / f"member-{i}") for i in range(MEMBERS)]
    x, targets = data.x_test, data.targets_test
    alone = [evaluate_model(m, x, targets) for m in members]
    rows = {
        "best member": max(alone, key=lambda r: r["map"]),
        "mean member": {k: statistics.mean(r[k] for r in alone) for k in KEYS},
    }
    for rule in RULES:
        rows[rule] = evaluate_model(Ensemble(members, combine=rule).eval(), x, targets)
    return {name: {k: float(r[k]) for k in KEYS} for name, r in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, help="write the per-seed numbers here")
    args = parser.parse_args()
    per_seed: dict[int, Any] = {}
    with tempfile.TemporaryDirectory() as runs:
        for seed in args.seeds:
            per_seed[seed] = one_seed(seed, runs)
            print(json.dumps({"seed": seed, **per_seed[seed]}), flush=True)
    print(f"\n{cpu_kind()}; median of seeds {args.seeds} (per seed in brackets)")
    print(f"{'':14s} {'mAP':>28s} {'AP@0.5':>28s}")
    for name in ("best member", "mean member", *RULES):
        cells = []
        for k in KEYS:
            values = [per_seed[s][name][k] for s in args.seeds]
            each = ", ".join(f"{v:.3f}" for v in values)
            cells.append(f"{statistics.median(values):.3f} ({each})")
        print(f"{name:14s} {cells[0]:>28s} {cells[1]:>28s}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(per_seed, indent=2))


if __name__ == "__main__":
    main()
