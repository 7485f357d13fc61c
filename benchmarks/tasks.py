"""Accuracy of the task recipes beside a simple baseline on the same split.

For each seed, `cnnlab train --recipe NAME --seed S` runs in a fresh process and its
metrics.json is read; then the recipe's baseline is fitted and scored on the same data:

- scenes-multilabel: logistic regression on the pixels (scikit-learn, one classifier per
  class, 32x32 average-pooled images), scored by cnnlab's macro-AP.
- scenes-segment: threshold the pixels (foreground = brighter than 32) and give every
  foreground pixel the most frequent item class of the training masks: mIoU.
- nuclei-segment: Otsu's threshold of the test quadrant: foreground IoU.
- faces-keypoints: the mean shape (the training set's mean position of each keypoint)
  for every test face: RMSE in pixels.

    python benchmarks/tasks.py scenes-multilabel --seeds 0 1 2 [--parallel 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

HEADLINE = {
    "scenes-multilabel": "macro_ap",
    "scenes-segment": "miou",
    "nuclei-segment": "fg_iou",
    "faces-keypoints": "rmse_px",
}


def run_seed(
    recipe: str, seed: int, runs_dir: str, threads: int | None, extra: list[str]
) -> dict[str, Any]:
    name = f"{recipe}-seed{seed}"
    command = [
        sys.executable, "-m", "cnnlab.app.cli", "train", "--recipe", recipe, "--seed", str(seed),
        "--name", name, "--runs-dir", runs_dir, "--no-report", "--no-progress", *extra,
    ]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    metrics = json.loads((Path(runs_dir) / name / "metrics.json").read_text())
    key = f"test_{HEADLINE[recipe]}"
    return {
        "seed": seed,
        key: metrics[key],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": wall,
    }


def baseline(recipe: str) -> float:
    from cnnlab import data
    from cnnlab.engine.recipes import recipe_values

    values = recipe_values(recipe)
    ds = data.load(values["dataset"], **values.get("dataset_args", {}))
    if recipe == "scenes-multilabel":
        from sklearn.linear_model import LogisticRegression

        from cnnlab.tasks.metrics_multilabel import MultilabelMetrics

        def pixels(x: torch.Tensor) -> np.ndarray:
            return torch.nn.functional.avg_pool2d(x.float() / 255, 2).flatten(1).numpy()

        xtr, xte = pixels(ds.x_train), pixels(ds.x_test)
        ytr = ds.targets_train["labels"].numpy()
        scores = np.stack(
            [
                LogisticRegression(max_iter=200, C=0.1).fit(xtr, ytr[:, k]).predict_proba(xte)[:, 1]
                for k in range(ytr.shape[1])
            ],
            axis=1,
        )
        metrics = MultilabelMetrics(ytr.shape[1])
        metrics.update(torch.from_numpy(scores), ds.targets_test["labels"])
        return float(metrics.compute()["macro_ap"])
    if recipe == "nuclei-segment":
        from cnnlab.data.nuclei import otsu_threshold
        from cnnlab.tasks.metrics import SegmentationMetrics

        pixels = ds.x_test[:, 0].numpy()
        pred = torch.from_numpy((pixels > otsu_threshold(pixels)).astype("int64"))
        seg = SegmentationMetrics(2, None)
        seg.update(pred, ds.targets_test["mask"].long())
        return float(seg.compute()["fg_iou"])
    if recipe == "scenes-segment":
        from cnnlab.tasks.metrics import SegmentationMetrics

        masks = ds.targets_train["mask"].long()
        common = int(torch.bincount(masks[masks > 0]).argmax())
        pred = (ds.x_test[:, 0] >= 32).long() * common
        seg = SegmentationMetrics(len(ds.mask_classes or []), None)
        seg.update(pred, ds.targets_test["mask"].long())
        return float(seg.compute()["miou"])
    from cnnlab.tasks.metrics import KeypointMetrics

    mean_shape = torch.nanmean(ds.targets_train["keypoints"], dim=0)
    pred = mean_shape.expand_as(ds.targets_test["keypoints"])
    kp = KeypointMetrics(ds.input_shape[-2:])
    kp.update(pred, ds.targets_test["keypoints"], ds.targets_test["visible"])
    return float(kp.compute()["rmse_px"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=sorted(HEADLINE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=1, help="seeds run at once (1 thread each)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("extra", nargs="*", help="more `cnnlab train` flags, after --")
    args = parser.parse_args()
    threads = args.threads or (1 if args.parallel > 1 else None)
    with tempfile.TemporaryDirectory() as runs_dir, ThreadPoolExecutor(args.parallel) as pool:
        rows = list(
            pool.map(lambda s: run_seed(args.recipe, s, runs_dir, threads, args.extra), args.seeds)
        )
    base = baseline(args.recipe)
    key = f"test_{HEADLINE[args.recipe]}"
    print(f"\n{args.recipe}: seed  {key}  training s  wall s")
    for r in rows:
        print(
            f"  {r['seed']:>4}  {r[key]:.4f}  {r['train_seconds']:10.0f}  {r['wall_seconds']:6.0f}"
        )
    values = [r[key] for r in rows]
    times = [r["train_seconds"] for r in rows]
    print(
        f"median {statistics.median(values):.4f} (min {min(values):.4f}, max {max(values):.4f}); "
        f"training s median {statistics.median(times):.0f} ({min(times):.0f}-{max(times):.0f}); "
        f"baseline {base:.4f}; {args.parallel} run(s) at once; cpu {os.cpu_count()} cores"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"recipe": args.recipe, "rows": rows, "baseline": base}, indent=2)
        )


if __name__ == "__main__":
    main()
