"""Rules that combine ensemble members' predictions: votes, averages, stacking, boosting.

Pure functions of the members' outputs, whatever trained them. Classification inputs are
``probs`` (M members, N items, K classes) of probabilities, given as one tensor or as a
sequence of M tensors (N, K), and ``labels`` (N,) of class ids; member predictions as class
ids are (M, N). Dense outputs (segmentation probabilities, heatmaps) are (M, N, C, H, W);
and boxes are fused by :mod:`cnnlab.tasks.box_fusion`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from torch import Tensor

from cnnlab.core.errors import ConfigError, ShapeMismatchError

C_GRID = tuple(float(c) for c in np.logspace(-2, 3, 11))  # stacker's inverse L2 strengths tried
SAMME_ERR_FLOOR = 1e-10  # a perfect member's error, so that its alpha stays finite


# ---------------------------------------------------------------- checks


def _members(probs: Tensor | Sequence[Tensor], what: str = "probs") -> Tensor:
    """Stacks a sequence of (N, K) member outputs into (M, N, K), refusing mixed shapes."""
    if not isinstance(probs, Tensor):
        shapes = [tuple(p.shape) for p in probs]
        ks = sorted({s[-1] for s in shapes if s})
        if len(ks) > 1:
            raise ShapeMismatchError(
                f"Expected every member to predict the same K classes, received K = {ks} "
                f"(member shapes {shapes})"
            )
        if not shapes or len(set(shapes)) != 1:
            raise ShapeMismatchError(
                f"Expected one (N, K) {what} per member, all of one shape, received {shapes}"
            )
        probs = torch.stack(list(probs))
    if probs.ndim != 3 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ShapeMismatchError(
            f"Expected {what} of shape (M members, N items, K classes) with M, N >= 1, "
            f"received {tuple(probs.shape)}"
        )
    return probs


def _check_probabilities(probs: Tensor) -> None:
    if not probs.is_floating_point():
        raise ConfigError(f"Expected floating-point probabilities, received dtype {probs.dtype}")
    # 16-bit softmax outputs sum to 1 only to about 1e-2
    tol = 1e-2 if torch.finfo(probs.dtype).bits <= 16 else 1e-3
    x = probs.detach().double()
    if not torch.isfinite(x).all():
        raise ConfigError("Expected finite probabilities, received NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < -tol or high > 1 + tol:
        raise ConfigError(
            f"Expected probabilities in [0, 1], received values in [{low:.4g}, {high:.4g}] "
            f"(logits? pass softmax(logits))"
        )
    sums = x.sum(-1)
    bad = torch.nonzero((sums - 1).abs() > tol)
    if len(bad):
        m, n = bad[0].tolist()
        raise ConfigError(
            f"Expected each member's probabilities to sum to 1 over the K={x.shape[-1]} classes, "
            f"received {float(sums[m, n]):.4g} for member {m}, item {n}"
        )


def _check_class_ids(ids: Tensor, shape: tuple[int, ...], k: int, what: str) -> None:
    if tuple(ids.shape) != shape:
        raise ShapeMismatchError(f"Expected {what} of shape {shape}, received {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ConfigError(f"Expected integer class ids as {what}, received dtype {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= k):
        raise ConfigError(
            f"Expected {what} in [0, {k}), received values {int(ids.min())}..{int(ids.max())}"
        )


def _check_weights(weights: Tensor | Sequence[float], m: int, simplex: bool) -> Tensor:
    """Member weights as float64 (M,): non-negative, summing to 1 if ``simplex``, else to > 0."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    if tuple(w.shape) != (m,):
        raise ShapeMismatchError(
            f"Expected weights of shape ({m},), one per member, received {tuple(w.shape)}"
        )
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ConfigError(f"Expected finite non-negative weights, received {w.tolist()}")
    total = float(w.sum())
    if (simplex and abs(total - 1) > 1e-4) or total <= 0:
        expected = "summing to 1" if simplex else "with a positive sum"
        raise ConfigError(f"Expected weights {expected}, received a sum of {total:.6g}")
    return w


# ---------------------------------------------------------------- votes and averages


def majority_vote_accuracy(p: float, n: int) -> float:
    """Probability that a majority of ``n`` independent classifiers, each right with ``p``, is right.

    sum_{k > n/2} C(n, k) p^k (1 - p)^(n - k) (Condorcet's jury theorem). For even ``n`` a
    tie (k = n/2) counts half, as if a fair coin broke it. The classifiers are right or
    wrong; over K > 2 classes the wrong votes may split, so this is a lower bound on a
    plurality vote. Seed 000's worked example: three 70% classifiers are right together
    with probability 0.7^3 + 3 * 0.7^2 * 0.3 = 0.343 + 0.441 = 0.784 (the lecture note
    misprints 0.7^3 as 0.3492).

    Raises:
        ConfigError: ``p`` outside [0, 1] or ``n`` not an integer >= 1.
    """
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"Expected a probability 0 <= p <= 1, received p={p!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"Expected an integer n >= 1 classifiers, received n={n!r}")
    terms = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1)]
    if n % 2 == 0:
        terms.append(0.5 * math.comb(n, n // 2) * (p * (1 - p)) ** (n // 2))
    return math.fsum(terms)


def hard_vote(probs: Tensor | Sequence[Tensor]) -> Tensor:
    """Vote shares (N, K): the fraction of the M members whose most probable class is k.

    A member whose own top probabilities tie votes for the lowest class id (as
    ``torch.argmax``). The shares stay exact multiples of 1/M, so two classes may tie:
    :func:`hard_vote_labels` gives winners with such ties broken by the summed probabilities.
    """
    probs = _members(probs)
    _check_probabilities(probs)
    m, _, k = probs.shape
    votes = torch.nn.functional.one_hot(probs.argmax(-1), k).sum(0)  # (N, K) counts
    return votes.to(probs.dtype) / m


def hard_vote_labels(probs: Tensor | Sequence[Tensor]) -> Tensor:
    """The hard vote's winners (N,): most votes; a tie goes to the larger summed probability.

    A tie of both (rare outside constructed cases) goes to the lowest class id.
    """
    probs = _members(probs)
    shares = hard_vote(probs)
    tied = shares == shares.max(-1, keepdim=True).values  # exact: shares are counts / M
    summed = probs.sum(0).double().masked_fill(~tied, -math.inf)
    return summed.argmax(-1)


def soft_average(probs: Tensor | Sequence[Tensor], weights: Tensor | None = None) -> Tensor:
    """The members' (weighted) mean probabilities (N, K).

    Args:
        probs: member probabilities (M, N, K).
        weights: (M,) non-negative, summing to 1; None weighs members equally.
    """
    probs = _members(probs)
    _check_probabilities(probs)
    if weights is None:
        return probs.mean(0)
    w = _check_weights(weights, probs.shape[0], simplex=True).to(probs.dtype)
    return torch.einsum("m,mnk->nk", w, probs)


def average_maps(maps: Tensor, weights: Tensor | None = None) -> Tensor:
    """The members' (weighted) mean of dense outputs (M, N, C, H, W) -> (N, C, H, W).

    For segmentation probabilities and keypoint heatmaps alike, so values are not checked
    to be probabilities. ``weights``: (M,) non-negative, summing to 1; None: equal.
    """
    if maps.ndim != 5 or maps.shape[0] == 0:
        raise ShapeMismatchError(
            f"Expected maps of shape (M members, N, C, H, W) with M >= 1, "
            f"received {tuple(maps.shape)}"
        )
    if weights is None:
        return maps.mean(0)
    w = _check_weights(weights, maps.shape[0], simplex=True).to(maps.dtype)
    return torch.einsum("m,mnchw->nchw", w, maps)


def _nll(weights: Tensor, right: Tensor) -> Tensor:
    # an item that every member gives probability 0 would make the loss infinite
    return -(weights @ right).clamp_min(1e-12).log().mean()


def fit_weights(
    probs_val: Tensor | Sequence[Tensor], labels_val: Tensor, steps: int = 200
) -> Tensor:
    """Simplex weights (M,) minimising the validation NLL of the weighted mean probabilities.

    The weights are softmax(theta), theta starting at 0 (equal weights), fitted by L-BFGS
    with a strong-Wolfe line search in float64: deterministic, and never worse than equal
    weights (if it were, equal weights are returned).

    Args:
        probs_val: member probabilities (M, N, K) on held-out items.
        labels_val: their class ids (N,).
        steps: the most L-BFGS iterations.
    """
    probs = _members(probs_val, "probs_val")
    _check_probabilities(probs)
    m, n, k = probs.shape
    _check_class_ids(labels_val, (n,), k, "labels_val")
    if steps < 1:
        raise ConfigError(f"Expected steps >= 1, received steps={steps}")
    right = probs.detach().double()[:, torch.arange(n), labels_val.long()]  # (M, N) p(true class)
    theta = torch.zeros(m, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [theta], max_iter=steps, line_search_fn="strong_wolfe",
        tolerance_grad=1e-10, tolerance_change=1e-14,
    )  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = _nll(theta.softmax(0), right)
        loss.backward()
        return loss

    optimizer.step(closure)
    weights = theta.detach().softmax(0)
    equal = torch.full((m,), 1.0 / m, dtype=torch.float64)
    if _nll(weights, right) > _nll(equal, right):
        weights = equal
    return weights.to(probs.dtype)


# ---------------------------------------------------------------- stacking


class Stacker:
    """Stacking's meta-learner: multinomial logistic regression on the members' probabilities.

    The features are the M members' probabilities side by side (N, M*K). Fit it on
    out-of-fold predictions (:func:`out_of_fold_indices`) or a held-out split, never on the
    members' predictions for their own training items, where they are overconfident.
    ``C`` (inverse L2 strength) is chosen from ``C_GRID`` by stratified ``folds``-fold
    cross-validated log-loss unless given. The fitted model is arrays only, so
    :meth:`to_dict` is plain JSON and :meth:`from_dict` rebuilds it without pickle;
    :meth:`predict_proba` computes from those arrays, fitted or rebuilt alike.
    """

    def __init__(
        self, C: float | None = None, folds: int = 5, seed: int = 0, max_iter: int = 1000
    ) -> None:
        if C is not None and not C > 0:
            raise ConfigError(f"Expected C > 0 or None (cross-validate), received C={C!r}")
        if folds < 2:
            raise ConfigError(f"Expected folds >= 2, received folds={folds}")
        self.C, self.folds, self.seed, self.max_iter = C, folds, seed, max_iter
        self.num_members = self.num_classes = 0
        self.classes: list[int] = []
        self.coef = np.zeros((0, 0))  # (rows, M*K); one row when two classes are present
        self.intercept = np.zeros(0)
        self.chosen_C = float("nan")

    def _features(self, probs: Tensor | Sequence[Tensor]) -> tuple[np.ndarray, torch.Size]:
        """Features (N, M*K) as float64, and the (M, N, K) shape of ``probs``."""
        p = _members(probs)
        _check_probabilities(p)
        m, n, k = p.shape
        if self.num_members and (m, k) != (self.num_members, self.num_classes):
            raise ShapeMismatchError(
                f"Expected probs of shape ({self.num_members}, N, {self.num_classes}) as in "
                f"fit, received {tuple(p.shape)}"
            )
        return p.detach().double().permute(1, 0, 2).reshape(n, m * k).numpy(), p.shape

    def _choose_C(self, x: np.ndarray, y: np.ndarray) -> float:
        fewest = int(np.unique(y, return_counts=True)[1].min())
        folds = min(self.folds, fewest)
        if folds < 2:
            raise ConfigError(
                f"Expected at least 2 items of every class present to cross-validate C, "
                f"received {fewest} of the rarest; pass C=... to skip cross-validation"
            )
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        scores = [
            cross_val_score(
                LogisticRegression(C=c, max_iter=self.max_iter), x, y, cv=cv,
                scoring="neg_log_loss",
            ).mean()
            for c in C_GRID
        ]  # fmt: skip
        return C_GRID[int(np.argmax(scores))]  # a tie goes to the stronger regularisation

    def fit(self, probs: Tensor | Sequence[Tensor], labels: Tensor) -> Stacker:
        """Fits on member probabilities (M, N, K) and class ids (N,); returns self."""
        self.num_members = 0  # a refit may change M or K: skip _features' shape check
        x, (m, n, k) = self._features(probs)
        _check_class_ids(labels, (n,), k, "labels")
        y = labels.numpy().astype(np.int64)
        present = np.unique(y)
        if len(present) < 2:
            raise ConfigError(
                f"Expected labels of at least 2 classes to stack, received only {present.tolist()}"
            )
        self.chosen_C = self.C if self.C is not None else self._choose_C(x, y)
        model = LogisticRegression(C=self.chosen_C, max_iter=self.max_iter).fit(x, y)
        self.num_members, self.num_classes = m, k
        self.classes = [int(c) for c in model.classes_]
        self.coef = np.asarray(model.coef_, dtype=np.float64)
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        return self

    def predict_proba(self, probs: Tensor | Sequence[Tensor]) -> Tensor:
        """Stacked probabilities (N, K); classes absent from the fit's labels get 0."""
        if not self.classes:
            raise ConfigError("Expected a fitted Stacker, received one never fitted")
        x, _ = self._features(probs)
        z = x @ self.coef.T + self.intercept  # (N, rows)
        if len(self.classes) == 2:  # sklearn's binary model: one logit for the second class
            second = 1.0 / (1.0 + np.exp(-z[:, 0]))
            cols = np.stack([1.0 - second, second], axis=1)
        else:
            e = np.exp(z - z.max(1, keepdims=True))
            cols = e / e.sum(1, keepdims=True)
        out = np.zeros((len(x), self.num_classes))
        out[:, self.classes] = cols
        dtype = probs.dtype if isinstance(probs, Tensor) else probs[0].dtype
        return torch.from_numpy(out).to(dtype)

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready lists and numbers."""
        return {
            "num_members": self.num_members, "num_classes": self.num_classes,
            "classes": list(self.classes), "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(), "C": self.chosen_C,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stacker:
        """Rebuilds a fitted Stacker from :meth:`to_dict`'s output."""
        stacker = cls(C=float(data["C"]))
        stacker.num_members = int(data["num_members"])
        stacker.num_classes = int(data["num_classes"])
        stacker.classes = [int(c) for c in data["classes"]]
        stacker.coef = np.asarray(data["coef"], dtype=np.float64)
        stacker.intercept = np.asarray(data["intercept"], dtype=np.float64)
        rows = 1 if len(stacker.classes) == 2 else len(stacker.classes)
        features = stacker.num_members * stacker.num_classes
        if stacker.coef.shape != (rows, features) or stacker.intercept.shape != (rows,):
            raise ConfigError(
                f"Expected coef ({rows}, {features}) and intercept ({rows},) for "
                f"{len(stacker.classes)} classes, received {stacker.coef.shape} and "
                f"{stacker.intercept.shape}"
            )
        return stacker


def out_of_fold_indices(n: int, folds: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """(train, held-out) index pairs: each item is held out exactly once.

    Fold sizes differ by at most one; indices are sorted within each tensor. A member
    trained on ``train`` predicts ``held``, and the held-out predictions gathered over the
    folds are the stacker's training set.
    """
    if not 2 <= folds <= n:
        raise ConfigError(f"Expected 2 <= folds <= n={n}, received folds={folds}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    pairs = []
    for held in perm.tensor_split(folds):
        train = torch.ones(n, dtype=torch.bool)
        train[held] = False
        pairs.append((torch.nonzero(train).flatten(), held.sort().values))
    return pairs


def bootstrap_indices(n: int, seed: int) -> Tensor:
    """Bagging's resample: ``n`` indices (n,) drawn uniformly with replacement from [0, n)."""
    if n < 1:
        raise ConfigError(f"Expected n >= 1 items, received n={n}")
    return torch.randint(0, n, (n,), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- diversity and boosting


def pairwise_disagreement(predictions: Tensor) -> Tensor:
    """(M, M) fraction of the N items on which members i and j predict different classes.

    Args:
        predictions: class ids (M, N).
    """
    if predictions.ndim != 2 or predictions.shape[1] == 0:
        raise ShapeMismatchError(
            f"Expected predictions of shape (M members, N items) with N >= 1, "
            f"received {tuple(predictions.shape)}"
        )
    return (predictions[:, None, :] != predictions[None, :, :]).double().mean(-1)


def mean_disagreement(predictions: Tensor) -> float:
    """The mean of :func:`pairwise_disagreement` over the M(M-1)/2 pairs i < j."""
    d = pairwise_disagreement(predictions)
    m = d.shape[0]
    if m < 2:
        raise ConfigError(f"Expected at least 2 members to disagree, received M={m}")
    i, j = torch.triu_indices(m, m, offset=1)
    return float(d[i, j].mean())


def samme_weights(
    sample_weights: Tensor, predictions: Tensor, labels: Tensor, num_classes: int
) -> tuple[float, Tensor]:
    """One SAMME boosting step (Zhu et al. 2009, "Multi-class AdaBoost").

    err = sum(w[wrong]) / sum(w); alpha = log((1 - err) / err) + log(K - 1); the new
    weights are w * exp(alpha * wrong), normalised to sum 1. A member with err = 0 is
    perfect on the weighted items: nothing is reweighted, boosting should stop, and err is
    floored at ``SAMME_ERR_FLOOR`` so that its alpha (~23 + log(K - 1)) stays finite, where
    an infinite one would turn :func:`boosted_vote`'s sums into NaN. (scikit-learn gives
    such a member alpha 1 and stops.)

    Args:
        sample_weights: non-negative weights (N,) of the items the member was fitted on.
        predictions: the member's class ids (N,).
        labels: the true class ids (N,).
        num_classes: K >= 2.

    Returns:
        (alpha, new sample weights (N,)).

    Raises:
        ConfigError: err >= 1 - 1/K, no better than chance: alpha would be <= 0. Drop the
            member and stop boosting, as scikit-learn's AdaBoostClassifier does.
    """
    if num_classes < 2:
        raise ConfigError(f"Expected num_classes >= 2, received {num_classes}")
    n = sample_weights.shape[0] if sample_weights.ndim == 1 else -1
    if n < 1 or not sample_weights.is_floating_point():
        raise ShapeMismatchError(
            f"Expected floating sample_weights of shape (N,) with N >= 1, received "
            f"{tuple(sample_weights.shape)} of dtype {sample_weights.dtype}"
        )
    _check_class_ids(predictions, (n,), num_classes, "predictions")
    _check_class_ids(labels, (n,), num_classes, "labels")
    w = sample_weights.double()
    if not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
        raise ConfigError("Expected finite non-negative sample_weights with a positive sum")
    wrong = predictions != labels
    err = float(w[wrong].sum() / w.sum())
    chance = 1.0 - 1.0 / num_classes
    if err >= chance:
        raise ConfigError(
            f"Expected a member better than chance, weighted error < 1 - 1/K = {chance:.4g}, "
            f"received {err:.4g}; drop it and stop boosting"
        )
    err = max(err, SAMME_ERR_FLOOR)
    alpha = math.log((1.0 - err) / err) + math.log(num_classes - 1.0)
    new = w * torch.exp(alpha * wrong.double())
    return alpha, (new / new.sum()).to(sample_weights.dtype)


def boosted_vote(predictions: Tensor, alphas: Tensor, num_classes: int) -> Tensor:
    """SAMME's combination: scores (N, K) = sum_m alpha_m [pred_m == k]; argmax is the class.

    Args:
        predictions: the members' class ids (M, N).
        alphas: their weights (M,), from :func:`samme_weights`.
        num_classes: K.
    """
    if predictions.ndim != 2:
        raise ShapeMismatchError(
            f"Expected predictions of shape (M, N), received {tuple(predictions.shape)}"
        )
    _check_class_ids(predictions, tuple(predictions.shape), num_classes, "predictions")
    alphas = torch.as_tensor(alphas)
    if tuple(alphas.shape) != (predictions.shape[0],) or not torch.isfinite(alphas).all():
        raise ShapeMismatchError(
            f"Expected finite alphas of shape ({predictions.shape[0]},), one per member, "
            f"received shape {tuple(alphas.shape)}"
        )
    alphas = alphas if alphas.is_floating_point() else alphas.double()
    onehot = torch.nn.functional.one_hot(predictions.long(), num_classes).to(alphas.dtype)
    return torch.einsum("m,mnk->nk", alphas, onehot)


def class_rows(
    coef: Any, intercept: Any, classes: Sequence[int], num_classes: int
) -> tuple[Tensor, Tensor]:
    """A scikit-learn linear model's (coef, intercept) as one row per class of
    ``num_classes``: a binary model's single row scores its second class against a zero
    row, and classes the fit never saw get a bias of -1e4 (never predicted)."""
    w = torch.as_tensor(np.asarray(coef), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(intercept), dtype=torch.float64)
    present = torch.as_tensor(list(classes), dtype=torch.int64)
    if len(present) == 2 and w.shape[0] == 1:
        w, b = torch.cat([torch.zeros_like(w), w]), torch.cat([torch.zeros_like(b), b])
    rows = torch.zeros(num_classes, w.shape[1], dtype=torch.float64)
    bias = torch.full((num_classes,), -1e4, dtype=torch.float64)
    rows[present], bias[present] = w, b
    return rows, bias
