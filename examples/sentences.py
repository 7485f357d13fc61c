"""Sentence polarity with Kim's (2014) CNN on MR: one fold of 10-fold cross-validation,
then predictions for new sentences and the n-grams that decided them.

CNNLAB_DATA_DIRS=../shared/data .venv/bin/python examples/sentences.py   # ~2 min on 2 cores
(benchmarks/mr_cv.py runs all ten folds, as the paper reports them.)
"""

from __future__ import annotations

from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import format_topk, predict_files
from cnnlab.runs import run_training

# Fold 0 tests; the vocabulary is built from the other nine folds only.
config = TrainConfig.from_recipe("mr-kim", name="sentences", dataset_args={"fold": 0})
metrics = run_training(config)
print(f"fold 0 test accuracy {metrics['test_accuracy']:.2%}")

sentences = [
    "a gorgeous , witty , seductive movie .",
    "the plot is tired and the jokes fall flat .",
]
print(format_topk(predict_files("runs/sentences", sentences)))
print("which n-grams fired for the test sentences: runs/sentences/report.html")
