"""Detection: a recipe trained per seed, its COCO numbers, and batch-1 inference speed.

Each seed runs `cnnlab train --recipe R --seed S` in a fresh process, one at a time (a
run uses every core), then reads metrics.json: COCO mAP, AP@0.5, AP@0.75, AR@100 on the
test split. With ``--speed`` it also times the trained model at batch 1 on the test
images (2 threads, eval mode, the run's CPU settings not applied: plain fp32), median of
``--repeats`` passes, model only and model + decoding + NMS.

    python benchmarks/detect.py --recipe scenes-detect --seeds 0 1 2 --speed --baseline scenes
    python benchmarks/detect.py --recipe scenes-detect --seeds 0 -- --model ssd
    python benchmarks/detect.py --recipe nuclei-detect --seeds 0 1 2 --baseline nuclei
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

import numpy as np
import torch

from cnnlab.core.cpu import cpu_kind

KEYS = ("map", "map_50", "map_75", "mar_100")
MIN_PIXELS = 4  # baseline: smaller specks are noise, not objects


def baseline(dataset: str) -> dict[str, float]:
    """A simple class-agnostic detector on the same test split: Otsu's threshold (of the
    training images), 8-connected components, one box per component, scored by its size
    and given to every class at that score (the classes carry no information)."""
    from scipy import ndimage

    from cnnlab import data as datasets
    from cnnlab.data.nuclei import otsu_threshold
    from cnnlab.tasks.coco_eval import DetectionMetrics
    from cnnlab.tasks.detect import unpad

    data = datasets.load(dataset)
    level = otsu_threshold(data.x_train[:2000].numpy())
    K = len(data.classes)
    metrics = DetectionMetrics()
    preds = []
    for image in data.x_test[:, 0].numpy():
        parts, _ = ndimage.label(image > level, structure=np.ones((3, 3)))
        boxes, scores = [], []
        for index, where in enumerate(ndimage.find_objects(parts), start=1):
            size = int((parts[where] == index).sum())
            if size >= MIN_PIXELS:
                rows, cols = where
                boxes += [[cols.start, rows.start, cols.stop, rows.stop]] * K
                scores += [size / image.size] * K
        labels = list(range(K)) * (len(boxes) // K)
        preds.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                      "scores": torch.tensor(scores), "labels": torch.tensor(labels)})  # fmt: skip
    metrics.update(preds, unpad(data.targets_test))
    return {f"baseline_{k}": v for k, v in metrics.compute().items() if k in KEYS}


def train(recipe: str, seed: int, runs_dir: str, extra: list[str]) -> dict[str, Any]:
    name = f"{recipe}-seed{seed}"
    command = [
        sys.executable, "-m", "cnnlab.app.cli", "train", "--recipe", recipe, "--seed", str(seed),
        "--name", name, "--runs-dir", runs_dir, "--no-report", "--no-progress", *extra,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    metrics = json.loads((Path(runs_dir) / name / "metrics.json").read_text())
    row = {k: metrics[f"test_{k}"] for k in KEYS}
    return {"recipe": recipe, "seed": seed, "model": metrics["model"], **row,
            "epochs": metrics["epochs"], "train_seconds": metrics["train_seconds"],
            "run_dir": metrics["run_dir"]}  # fmt: skip


def speed(run_dir: str, repeats: int) -> dict[str, float]:
    """Images per second at batch 1: the network alone, and with decoding and NMS."""
    from cnnlab import data as datasets
    from cnnlab.data.loader import to_input
    from cnnlab.engine.predictor import settings_of, task_of
    from cnnlab.models.saved import load

    torch.set_num_threads(2)
    model = load(run_dir).eval()
    task = task_of(model)
    data = datasets.load(json.loads((Path(run_dir) / "metrics.json").read_text())["dataset"])
    norm = settings_of(model).normalize
    images = [to_input(data.x_test[i : i + 1], norm) for i in range(min(200, len(data.x_test)))]
    net, full = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            for x in images:
                model(x)
            net.append(len(images) / (time.perf_counter() - started))
            started = time.perf_counter()
            for x in images:
                task.detections(model(x))
            full.append(len(images) / (time.perf_counter() - started))
    return {"net_img_s": statistics.median(net), "with_nms_img_s": statistics.median(full)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="scenes-detect")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--speed", action="store_true", help="time batch-1 inference too")
    parser.add_argument(
        "--baseline", help="also score the threshold-components baseline on this dataset"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs-dir", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("extra", nargs="*", help="more `cnnlab train` flags, after --")
    args = parser.parse_args()
    cpu = cpu_kind()
    print(f"cpu: {cpu}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = train(args.recipe, seed, args.runs_dir or tmp, args.extra)
            if args.speed:
                row.update(speed(row["run_dir"], args.repeats))
            results.append(row)
            print(json.dumps(row), flush=True)
    simple = baseline(args.baseline) if args.baseline else {}
    print(f"\n{args.recipe} ({results[0]['model']}) on {cpu}, {len(results)} seed(s)")
    for key, value in simple.items():
        print(f"  {key:>15}: {value:.4f} (Otsu threshold, connected components, class-agnostic)")
    for key in (*KEYS, "train_seconds", *(["net_img_s", "with_nms_img_s"] if args.speed else [])):
        values = [r[key] for r in results]
        print(
            f"  {key:>15}: median {statistics.median(values):.4g} (range {min(values):.4g}-{max(values):.4g})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "results": results, **simple}, indent=2))


if __name__ == "__main__":
    main()
