"""Spoken digits (FSDD): a log-mel CNN on a random split of recordings and on held-out
speakers, beside MFCC + logistic regression on the same splits (and M5 on raw waveforms).

Splits: ``random`` (20% of the recordings, stratified by digit, split seed 0) and
``speakers`` (every recording of the ``--test-speakers`` tests; the model never heard
those voices). Each seed trains the `fsdd-speech` recipe in this process.

    CNNLAB_DATA_DIRS=../shared/data python benchmarks/fsdd.py --seeds 0 1 2 --json runs/fsdd.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab import data as datasets
from cnnlab.core.cpu import cpu_kind
from cnnlab.engine.config import TrainConfig
from cnnlab.runs.run import train_one


def mfcc_features(x: torch.Tensor) -> np.ndarray:
    """13 MFCCs per 10 ms frame (32 ms windows, 40 mel bands), flattened: (N, 13 * frames)."""
    from cnnlab.layers.audio import MFCC

    mfcc = MFCC(sample_rate=8000, n_mfcc=13, n_fft=256, hop_length=80, n_mels=40)
    with torch.no_grad():
        return torch.cat([mfcc(b).flatten(1) for b in x.split(500)]).numpy()


def mfcc_baseline(data: Any) -> float:
    """Logistic regression on standardised MFCC matrices: test accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    model.fit(mfcc_features(data.x_train), data.y_train.numpy())
    return float((model.predict(mfcc_features(data.x_test)) == data.y_test.numpy()).mean())


def train(split_args: dict[str, Any], seed: int, folder: str, **overrides: Any) -> dict[str, Any]:
    """One run of the recipe on the split; test accuracy and training seconds."""
    data = datasets.load("fsdd", **split_args)
    config = TrainConfig.from_recipe(
        "fsdd-speech", seed=seed, runs_dir=folder, name=f"s{seed}", report=False,
        progress=False, dataset_args=split_args, **overrides,
    )  # fmt: skip
    metrics, _ = train_one(config, data=data, log=lambda _: None)
    return {"seed": seed, "accuracy": metrics["test_accuracy"],
            "train_seconds": metrics["train_seconds"]}  # fmt: skip


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accuracies = [r["accuracy"] for r in runs]
    return {"median": statistics.median(accuracies), "min": min(accuracies),
            "max": max(accuracies), "runs": runs}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-speakers", nargs="+", default=["nicolas", "theo"])
    parser.add_argument(
        "--m5", action="store_true", help="also M5 on raw waveforms (random split, seed 0)"
    )
    parser.add_argument("--threads", type=int, help="torch threads per run (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    splits = {
        "random": {"split": "random", "test_fraction": 0.2, "seed": 0},
        "speakers": {"split": "speakers", "test_speakers": args.test_speakers},
    }
    result: dict[str, Any] = {
        "what": "FSDD spoken digits, spectrogram_cnn (fsdd-speech)", "cpu": cpu_kind(),
        "date": time.strftime("%Y-%m-%d"), "test_speakers": args.test_speakers,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for name, split_args in splits.items():
            base = mfcc_baseline(datasets.load("fsdd", **split_args))
            print(f"{name}: MFCC + logistic regression {base:.2%}")
            runs = []
            for seed in args.seeds:
                runs.append(train(split_args, seed, folder, threads=args.threads))
                print(f"{name} seed {seed}: {runs[-1]['accuracy']:.2%} "
                      f"({runs[-1]['train_seconds']:.0f} s)")  # fmt: skip
            result[name] = {**summary(runs), "baseline_mfcc_logreg": base}
            print(f"{name}: median {result[name]['median']:.2%} "
                  f"({result[name]['min']:.2%}-{result[name]['max']:.2%})")  # fmt: skip
            if args.m5 and name == "random":
                m5 = train(split_args, 0, folder, model="m5", threads=args.threads)
                result[name]["m5_seed0"] = m5
                print(
                    f"{name}: M5 on raw waveforms {m5['accuracy']:.2%} ({m5['train_seconds']:.0f} s)"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
