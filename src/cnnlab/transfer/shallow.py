"""Off-the-shelf features -> a shallow classifier, in one call (seed 000's transfer recipe).

A trained network's body turns each image into a pooled feature vector; scikit-learn
fits logistic regression, a linear SVM or k-nearest neighbours on them, with the
regularisation (or k) chosen by stratified cross-validation on the training images only.
The result is a :class:`~cnnlab.models.shallow.ShallowClassifier`: a cnnlab model, saved
and loaded with ``cnnlab.save``/``cnnlab.load`` (tensors only), evaluated like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.core.records import ModelRecord, record_of, set_record
from cnnlab.data.dataset import ImageDataset
from cnnlab.models.saved import in_batches
from cnnlab.models.shallow import SHALLOW, NearestNeighbours, ShallowClassifier, pooled_features
from cnnlab.transfer.combine import class_rows

CLASSIFIERS = ("logreg", "svm", "knn")
C_GRID = np.logspace(-3, 2, 11)  # inverse regularisation tried by cross-validation
K_GRID = (1, 3, 5, 7, 9, 15)


def extract_features(
    body: nn.Module, images: torch.Tensor, stats: dict[str, Any], batch_size: int = 500
) -> torch.Tensor:
    """Pooled features (N, C) of ``images`` (as a dataset holds them), in eval mode.

    ``stats`` holds the ``mean``/``std`` the body was trained with.
    """
    was_training = body.training
    body.eval()
    features = in_batches(lambda x: pooled_features(body, x).float(), images, stats, batch_size)
    body.train(was_training)
    return features


def _folds(labels: np.ndarray, cv: int) -> int:
    fewest = int(np.bincount(labels).min()) if len(labels) else 0
    folds = min(cv, fewest)
    if folds < 2:
        raise ConfigError(
            f"cross-validation needs at least 2 training images of every class, received "
            f"{fewest} of the rarest; label more, or pick the classifier's setting yourself"
        )
    return folds


def _fit(
    classifier: str, f: np.ndarray, y: np.ndarray, cv: int, seed: int
) -> tuple[Any, dict[str, Any]]:
    """The fitted scikit-learn estimator on standardised features, and what CV chose."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    folds = StratifiedKFold(_folds(y, cv), shuffle=True, random_state=seed)
    estimator: Any
    grid: dict[str, Any]
    if classifier == "logreg":
        estimator, grid = LogisticRegression(max_iter=2000), {"C": C_GRID}
    elif classifier == "svm":
        estimator, grid = LinearSVC(max_iter=5000, random_state=seed), {"C": C_GRID}
    else:
        ks = [k for k in K_GRID if k <= len(y) * (1 - 1 / folds.n_splits)]
        estimator, grid = KNeighborsClassifier(), {"n_neighbors": ks}
    search = GridSearchCV(estimator, grid, cv=folds, n_jobs=1).fit(f, y)
    chosen = {**search.best_params_, "cv_accuracy": round(float(search.best_score_), 4)}
    return search.best_estimator_, {k: _plain(v) for k, v in chosen.items()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def fit_shallow(
    model: nn.Module,
    data: ImageDataset,
    classifier: str = "logreg",
    *,
    cv: int = 5,
    seed: int = 0,
    batch_size: int = 500,
    log: Callable[[str], None] = print,
) -> ShallowClassifier:
    """Fit ``classifier`` on ``model``'s pooled features of ``data``'s training images.

    Args:
        model: a trained network with ``forward_features`` (e.g. ``cnnlab.load(RUN)``);
            it is not changed. Images are normalised as it was trained (its record's
            mean/std), else by the data's own statistics.
        data: a classification dataset.
        classifier: "logreg" (multinomial logistic regression), "svm" (linear SVM,
            one-vs-rest; its outputs are margins, not calibrated probabilities) or
            "knn" (uniform vote of the k nearest standardised feature vectors).
        cv: folds of the stratified cross-validation that picks C (or k).

    Raises:
        ConfigError: an unknown classifier, a model without ``forward_features``, or too
            few images of a class to cross-validate.
    """
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"Expected classifier in {CLASSIFIERS}, received {classifier!r}")
    if not callable(getattr(model, "forward_features", None)):
        raise ConfigError(
            f"{type(model).__name__} has no forward_features: fit_shallow needs a zoo "
            "classifier (or a saved one) as its feature extractor"
        )
    record = record_of(model)
    if record is not None and record.mean is not None:
        stats = {"mean": record.mean, "std": record.std}
    else:
        data_mean, data_std = data.channel_stats()
        stats = {"mean": data_mean, "std": data_std}
    # 1. Features of the training images, standardised (their mean and scale are kept).
    f = extract_features(model, data.x_train, stats, batch_size)
    mean, scale = f.mean(0), f.std(0).clamp_min(1e-6)
    z = ((f - mean) / scale).numpy()
    y = data.targets_train["label"].numpy()
    # 2. The classifier, its setting chosen by cross-validation.
    estimator, chosen = _fit(classifier, z, y, cv, seed)
    log(f"fit_shallow: {classifier} on {z.shape[1]} features of {len(y)} images; chose {chosen}")
    # 3. The fitted numbers as tensors of a ShallowClassifier.
    shallow = _as_module(model, classifier, estimator, z, y, data.num_classes)
    shallow.mean.copy_(mean)
    shallow.scale.copy_(scale)
    _set_record(shallow, model, classifier, chosen, data, stats)
    return shallow


def _as_module(
    body: nn.Module, classifier: str, estimator: Any, z: np.ndarray, y: np.ndarray, k: int
) -> ShallowClassifier:
    if classifier == "knn":
        n = estimator.n_neighbors
        shallow = ShallowClassifier(body, "knn", z.shape[1], k, n_train=len(z), k=n)
        head = shallow.head
        assert isinstance(head, NearestNeighbours)
        head.train_features.copy_(torch.from_numpy(z).float())
        head.train_labels.copy_(torch.from_numpy(y))
        return shallow
    shallow = ShallowClassifier(body, "linear", z.shape[1], k)
    coef, bias = class_rows(estimator.coef_, estimator.intercept_, estimator.classes_, k)
    linear = shallow.head
    assert isinstance(linear, nn.Linear)
    linear.weight.data.copy_(coef)
    linear.bias.data.copy_(bias)
    return shallow


def _set_record(
    shallow: ShallowClassifier,
    body: nn.Module,
    classifier: str,
    chosen: dict[str, Any],
    data: ImageDataset,
    stats: dict[str, Any],
) -> None:
    body_record = record_of(body)
    described = (
        {"architecture": body_record.architecture, "model_args": body_record.model_args}
        if body_record is not None
        else None
    )
    args: dict[str, Any] = {
        "body": described, "head": shallow.kind, "num_features": int(shallow.mean.numel()),
        "num_classes": data.num_classes, "classifier": classifier, "chosen": chosen,
    }  # fmt: skip
    if shallow.kind == "knn":
        args |= {"n_train": len(data.x_train), "k": int(chosen["n_neighbors"])}
    set_record(
        shallow,
        ModelRecord(
            architecture=SHALLOW, model_args=args, task="classify",
            input_shape=list(data.input_shape), classes=list(data.classes),
            mean=stats["mean"], std=stats["std"], tta=False, dataset=data.name,
        ),
    )  # fmt: skip
