"""Claim: the automatic CPU settings are never more than 3% slower than plain fp32 eager.

For each benchmark model: let the tuner choose (or read its cached choice) for the real
run length, then alternate Trainer.fit runs of ``--batches`` batches with that choice and
with ``autotune=False`` (plain fp32 NCHW eager), and report each side's median
images/second and the median of the per-pair ratios auto / plain.

    .venv/bin/python benchmarks/autotune_check.py [--rounds 5] [--batches 80] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from cnnlab import TrainConfig, Trainer, create_model
from cnnlab.data import load
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import autotune

MODELS: dict[str, dict[str, Any]] = {
    "resnet_mini": {},
    "keras_cifar": {"in_channels": 1, "input_size": 28},
}


def choose(name: str, args: dict[str, Any], data: ImageDataset) -> autotune.CpuSettings:
    """The tuner's choice for a full-length run (timed now, or read from the cache)."""
    config = TrainConfig(model=name, model_args=args, progress=False)
    model = create_model(name, num_classes=data.num_classes, **args)
    steps = len(data.x_train) // config.batch_size * config.epochs
    choice = autotune.resolve(config, model, data.input_shape, data.num_classes, run_steps=steps)
    print(f"{name}: {choice.message()}")
    return choice.settings


def fit_rate(name: str, args: dict[str, Any], data: ImageDataset, settings: dict[str, Any],
             batches: int, runs: str) -> float:  # fmt: skip
    torch.manual_seed(0)
    model = create_model(name, num_classes=data.num_classes, **args)
    config = TrainConfig(
        model=name, model_args=args, runs_dir=runs, epochs=1, limit_batches=batches,
        augment="none", progress=False, report=False, **settings,
    )  # fmt: skip
    history = Trainer(model, config, log=lambda _: None).fit(data)
    return history[0]["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=80)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    data = load("fashion-mnist")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as runs:
        for name, model_args in MODELS.items():
            chosen = choose(name, model_args, data)
            auto = {f: getattr(chosen, f) for f in autotune.SETTINGS}
            plain = {"autotune": False}
            pairs = []
            for _ in range(args.rounds):
                a = fit_rate(name, model_args, data, auto, args.batches, runs)
                p = fit_rate(name, model_args, data, plain, args.batches, runs)
                pairs.append((a, p))
                print(f"  auto {a:7.0f} img/s  plain {p:7.0f} img/s  ratio {a / p:.3f}")
            ratios = [a / p for a, p in pairs]
            results[name] = {
                "choice": chosen.name,
                "auto_median": statistics.median(a for a, _ in pairs),
                "plain_median": statistics.median(p for _, p in pairs),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
            r = results[name]
            print(
                f"{name}: {r['choice']} median {r['auto_median']:.0f} img/s vs fp32 eager "
                f"{r['plain_median']:.0f}; median pair ratio {r['ratio_median']:.3f} "
                f"({r['ratio_min']:.3f}-{r['ratio_max']:.3f})"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
