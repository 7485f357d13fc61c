"""Kim's CNN on MR by 10-fold cross-validation, as Kim (2014) reports it, beside TF-IDF +
logistic regression on the very same folds.

For each fold the vocabulary comes from the nine training folds only (the `mr` dataset's
``fold`` option); the CNN trains the `mr-kim` recipe in this process. A seed changes the
network's initialisation and batch order, not the folds (fold seed 0, stratified).
Reported per seed: mean and standard deviation over the folds; over seeds: the median.

    CNNLAB_DATA_DIRS=../shared/data python benchmarks/mr_cv.py --seeds 0 1 2 --json runs/mr-cv.json
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

from cnnlab import data as datasets
from cnnlab.core.cpu import cpu_kind
from cnnlab.engine.config import TrainConfig
from cnnlab.runs.run import train_one

FOLDS = 10


def tfidf_baseline() -> list[float]:
    """Per-fold accuracy of TF-IDF (words and bigrams, sublinear tf) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from cnnlab.data.text import cv_folds, read_mr, tokenize

    folder = Path(next(iter(datasets.fetch("mr", download=False).values()))).parent
    texts, labels = read_mr(folder)
    tokens = [" ".join(tokenize(t)) for t in texts]
    scores = []
    for train, test in cv_folds(len(texts), k=FOLDS, seed=0, labels=labels):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
        x_train = vectorizer.fit_transform([tokens[i] for i in train])
        model = LogisticRegression(C=4.0, max_iter=2000).fit(x_train, labels[train])
        predicted = model.predict(vectorizer.transform([tokens[i] for i in test]))
        scores.append(float((predicted == labels[test]).mean()))
    return scores


def cnn_folds(recipe: str, seed: int, mode: str, threads: int | None) -> dict[str, Any]:
    """The recipe trained on each fold: per-fold accuracy and seconds."""
    accuracies, seconds = [], []
    with tempfile.TemporaryDirectory() as folder:
        for fold in range(FOLDS):
            data = datasets.load("mr", fold=fold)
            config = TrainConfig.from_recipe(
                recipe, seed=seed, runs_dir=folder, name=f"fold{fold}", report=False,
                progress=False, dataset_args={"fold": fold}, model_args={"mode": mode},
                threads=threads,
            )  # fmt: skip
            metrics, _ = train_one(config, data=data, log=lambda _: None)
            accuracies.append(metrics["test_accuracy"])
            seconds.append(metrics["train_seconds"])
            print(f"  seed {seed} fold {fold}: {accuracies[-1]:.2%} ({seconds[-1]:.0f} s)")
    return {
        "seed": seed, "folds": accuracies, "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies)), "train_seconds": sum(seconds),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", default="mr-kim")
    parser.add_argument("--mode", default="rand", help="rand (no pre-trained vectors here)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    baseline = tfidf_baseline()
    print(f"TF-IDF + logistic regression: {np.mean(baseline):.2%} +- {np.std(baseline):.2%}")
    runs = []
    for seed in args.seeds:
        run = cnn_folds(args.recipe, seed, args.mode, args.threads)
        runs.append(run)
        print(
            f"seed {seed}: {run['mean']:.2%} +- {run['std']:.2%} over {FOLDS} folds "
            f"({run['train_seconds']:.0f} s of training)"
        )
    means = [r["mean"] for r in runs]
    result = {
        "what": f"MR 10-fold CV, kim_cnn {args.mode} ({args.recipe})",
        "cpu": cpu_kind(), "date": time.strftime("%Y-%m-%d"),
        "median_of_seed_means": statistics.median(means), "min": min(means), "max": max(means),
        "runs": runs, "paper_cnn_rand": 0.761,
        "baseline": {"folds": baseline, "mean": float(np.mean(baseline)),
                     "std": float(np.std(baseline))},
    }  # fmt: skip
    print(
        f"CNN-{args.mode}: median of seed means {result['median_of_seed_means']:.2%} "
        f"({min(means):.2%}-{max(means):.2%}); Kim 2014: 76.1%; TF-IDF+LR "
        f"{np.mean(baseline):.2%}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
