"""CWRU bearing faults (10 classes, time split): WDCNN per seed vs an envelope-spectrum +
logistic-regression baseline on the same windows, with the per-class confusion.

Each seed trains the `cwru-wdcnn` recipe in this process (one run at a time, every core)
and scores the test windows; the baseline fits scikit-learn's logistic regression on the
envelope spectra (Hann window, |FFT| of the Hilbert envelope up to ``--max-hz``) of the
training windows. Needs the CWRU copy: ``CNNLAB_DATA_DIRS=../shared/data``.

    python benchmarks/cwru.py --seeds 0 1 2 --json runs/cwru.json
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
from cnnlab.engine.predictor import probabilities
from cnnlab.runs.run import train_one


def noisy(x: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """The test windows with white noise at ``snr_db`` (relative to each window's power)."""
    from cnnlab.data.augment_signal import AddNoise

    return AddNoise((snr_db, snr_db))(x, torch.Generator().manual_seed(seed))


def envelope_baseline(data: Any, max_hz: float | None, snrs: list[float]) -> dict[str, Any]:
    """Logistic regression on standardised log envelope spectra; accuracy (clean and at
    each SNR of the test windows) and time."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cnnlab.data.bearing import envelope_spectrum
    from cnnlab.data.cwru import SAMPLE_RATE

    started = time.perf_counter()

    def features(x: torch.Tensor) -> np.ndarray:
        spectra = envelope_spectrum(x[:, 0].numpy(), SAMPLE_RATE, max_hz=max_hz)
        return np.log1p(spectra)

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    model.fit(features(data.x_train), data.y_train.numpy())
    truth = data.y_test.numpy()
    accuracy = float((model.predict(features(data.x_test)) == truth).mean())
    at_snr = {
        str(snr): float((model.predict(features(noisy(data.x_test, snr))) == truth).mean())
        for snr in snrs
    }
    return {
        "accuracy": accuracy, "noisy": at_snr, "seconds": time.perf_counter() - started,
        "max_hz": max_hz,
    }  # fmt: skip


def confusion(pred: np.ndarray, true: np.ndarray, k: int) -> list[list[int]]:
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (true, pred), 1)
    return matrix.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", default="cwru-wdcnn")
    parser.add_argument("--model", help="another model than the recipe's, e.g. resnet1d")
    parser.add_argument("--max-hz", type=float, default=None, help="baseline spectrum limit")
    parser.add_argument(
        "--snr", type=float, nargs="*", default=[-4.0, 0.0, 4.0, 8.0],
        help="also score the test windows with white noise at these SNRs (dB)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    data = datasets.load("cwru")
    base = envelope_baseline(data, args.max_hz, args.snr)
    print(
        f"envelope spectrum + logistic regression: {base['accuracy']:.2%} ({base['seconds']:.1f} s)"
    )
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            extra = {"model": args.model} if args.model else {}
            config = TrainConfig.from_recipe(
                args.recipe, seed=seed, runs_dir=folder, name=f"seed{seed}", report=False,
                progress=False, **extra,
            )  # fmt: skip
            metrics, model = train_one(config, data=data, log=lambda _: None)
            pred = probabilities(model, data.x_test).argmax(1).numpy()
            at_snr = {
                str(snr): float(
                    (probabilities(model, noisy(data.x_test, snr)).argmax(1) == data.y_test)
                    .float()
                    .mean()
                )
                for snr in args.snr
            }
            runs.append({
                "noisy": at_snr,
                "seed": seed, "accuracy": metrics["test_accuracy"],
                "train_seconds": metrics["train_seconds"],
                "confusion": confusion(pred, data.y_test.numpy(), data.num_classes),
            })  # fmt: skip
            print(
                f"seed {seed}: {metrics['test_accuracy']:.2%} in {metrics['train_seconds']:.0f} s"
            )
    accuracies = [r["accuracy"] for r in runs]
    result = {
        "what": f"CWRU 10-class time split, {config.model} ({args.recipe})",
        "cpu": cpu_kind(), "date": time.strftime("%Y-%m-%d"),
        "test_windows": len(data.x_test), "train_windows": len(data.x_train),
        "classes": data.classes, "median_accuracy": statistics.median(accuracies),
        "min_accuracy": min(accuracies), "max_accuracy": max(accuracies),
        "runs": runs, "baseline": base,
    }  # fmt: skip
    print(
        f"median {result['median_accuracy']:.2%} ({min(accuracies):.2%}-{max(accuracies):.2%}) "
        f"over seeds {args.seeds}; baseline {base['accuracy']:.2%}"
    )
    for snr in args.snr:
        cnn = statistics.median(r["noisy"][str(snr)] for r in runs)
        print(
            f"  noise at {snr:+.0f} dB SNR: CNN median {cnn:.2%}, baseline {base['noisy'][str(snr)]:.2%}"
        )
    worst = runs[accuracies.index(min(accuracies))]["confusion"]
    print("confusion of the worst seed (rows true, columns predicted):")
    for name, row in zip(data.classes, worst, strict=True):
        print(f"  {name:<10} " + " ".join(f"{v:3d}" for v in row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
