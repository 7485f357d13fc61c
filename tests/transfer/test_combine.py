"""Ensemble combination rules, each against an oracle: simulation, NumPy loops, scikit-learn,
and hand-computed cases."""

from __future__ import annotations

import inspect
import itertools
import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.ensemble import AdaBoostClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.transfer.combine import (
    C_GRID,
    SAMME_ERR_FLOOR,
    Stacker,
    average_maps,
    boosted_vote,
    bootstrap_indices,
    fit_weights,
    hard_vote,
    hard_vote_labels,
    majority_vote_accuracy,
    mean_disagreement,
    out_of_fold_indices,
    pairwise_disagreement,
    samme_weights,
    soft_average,
)


def random_probs(m: int, n: int, k: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.dirichlet(np.ones(k), size=(m, n)))


def member_probs(labels: np.ndarray, k: int, strengths: list[float], seed: int) -> torch.Tensor:
    """Members whose logits lean towards the true class by ``strength``, plus noise."""
    rng = np.random.default_rng(seed)
    out = []
    for s in strengths:
        logits = s * np.eye(k)[labels] + rng.normal(size=(len(labels), k))
        e = np.exp(logits - logits.max(1, keepdims=True))
        out.append(e / e.sum(1, keepdims=True))
    return torch.from_numpy(np.stack(out))


# ---------------------------------------------------------------- majority vote


def test_majority_vote_seed_000_worked_example() -> None:
    assert majority_vote_accuracy(0.7, 3) == pytest.approx(0.784, abs=1e-12)
    assert math.isclose(0.7**3, 0.343)  # not the lecture note's 0.3492
    assert majority_vote_accuracy(0.7, 3) == pytest.approx(0.343 + 0.441, abs=1e-12)


@pytest.mark.parametrize(
    "p, n", [(0.7, 3), (0.6, 5), (0.55, 4), (0.8, 10), (0.3, 7), (0.5, 2), (0.9, 1)]
)
def test_majority_vote_matches_simulation(p: float, n: int) -> None:
    trials = 200_000
    rng = np.random.default_rng(n * 1000 + round(p * 100))
    right = (rng.random((trials, n)) < p).sum(1)
    outcome = (right > n / 2) + 0.5 * (right == n / 2)  # a tie is a fair coin
    se = outcome.std() / math.sqrt(trials)
    assert abs(majority_vote_accuracy(p, n) - outcome.mean()) < 3 * se + 1e-9


def test_majority_vote_edges_and_errors() -> None:
    assert majority_vote_accuracy(0.0, 5) == 0.0
    assert majority_vote_accuracy(1.0, 4) == 1.0
    assert majority_vote_accuracy(0.62, 1) == pytest.approx(0.62)
    for p, n in [(-0.1, 3), (1.5, 3), (0.7, 0), (0.7, 2.5), (0.7, True)]:
        with pytest.raises(ConfigError):
            majority_vote_accuracy(p, n)  # type: ignore[arg-type]


# ---------------------------------------------------------------- votes and averages


def test_hard_vote_matches_numpy_loop() -> None:
    probs = random_probs(5, 40, 4, seed=1)
    expected = np.zeros((40, 4))
    for i in range(40):
        for m in range(5):
            expected[i, int(np.argmax(probs[m, i].numpy()))] += 1 / 5
    np.testing.assert_allclose(hard_vote(probs).numpy(), expected, atol=1e-12)
    assert torch.equal(hard_vote(list(probs)), hard_vote(probs))


def test_hard_vote_labels_break_ties_by_summed_probabilities() -> None:
    probs = torch.tensor([[[0.6, 0.4, 0.0]], [[0.1, 0.9, 0.0]]])  # one vote each for 0 and 1
    assert hard_vote(probs).tolist() == [[0.5, 0.5, 0.0]]
    assert hard_vote_labels(probs).tolist() == [1]  # 1.3 > 0.7 summed
    probs = random_probs(4, 200, 3, seed=2)  # 4 voters over 3 classes: many ties
    votes = probs.argmax(-1).numpy()
    summed = probs.sum(0).numpy()
    expected = []
    for i in range(200):
        counts = np.bincount(votes[:, i], minlength=3)
        tied = np.flatnonzero(counts == counts.max())
        expected.append(tied[np.argmax(summed[i, tied])])
    assert hard_vote_labels(probs).tolist() == expected


def test_soft_average_matches_manual_mean() -> None:
    probs = random_probs(3, 10, 5, seed=3)
    manual = (probs[0] + probs[1] + probs[2]) / 3
    torch.testing.assert_close(soft_average(probs), manual)
    w = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    torch.testing.assert_close(
        soft_average(probs, w), 0.5 * probs[0] + 0.2 * probs[1] + 0.3 * probs[2]
    )


def test_average_maps_matches_manual_mean() -> None:
    maps = torch.rand(3, 2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(average_maps(maps), (maps[0] + maps[1] + maps[2]) / 3)
    w = torch.tensor([0.6, 0.4, 0.0])
    torch.testing.assert_close(average_maps(maps, w), 0.6 * maps[0] + 0.4 * maps[1])
    with pytest.raises(ShapeMismatchError, match=r"\(3, 2, 4, 5\)"):
        average_maps(maps[..., 0])
    with pytest.raises(ShapeMismatchError, match=r"\(3,\)"):
        average_maps(maps, torch.tensor([0.5, 0.5]))


def test_combiners_refuse_bad_inputs() -> None:
    probs = random_probs(3, 4, 3, seed=4)
    with pytest.raises(ShapeMismatchError, match=r"K = \[3, 4\]"):
        soft_average([probs[0], random_probs(1, 4, 4, seed=5)[0]])
    with pytest.raises(ShapeMismatchError, match=r"\(4, 3\), \(5, 3\)"):
        hard_vote([probs[0], random_probs(1, 5, 3, seed=5)[0]])
    with pytest.raises(ConfigError, match="logits"):
        hard_vote(torch.randn(3, 4, 3) * 5)
    with pytest.raises(ConfigError, match="sum to 1"):
        soft_average(probs * 0.5)
    with pytest.raises(ShapeMismatchError, match=r"received \(2,\)"):
        soft_average(probs, torch.tensor([0.5, 0.5]))
    with pytest.raises(ConfigError, match="summing to 1"):
        soft_average(probs, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ConfigError, match="non-negative"):
        soft_average(probs, torch.tensor([1.5, -0.5, 0.0]))


# ---------------------------------------------------------------- fitted weights


def nll(weights: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> float:
    mixed = torch.einsum("m,mnk->nk", weights.double(), probs.double())
    return float(-mixed[torch.arange(len(labels)), labels].log().mean())


def test_fit_weights_concentrates_on_the_perfect_member() -> None:
    rng = np.random.default_rng(6)
    labels = torch.from_numpy(rng.integers(0, 4, 300))
    perfect = torch.full((300, 4), 0.1 / 3, dtype=torch.float64)
    perfect[torch.arange(300), labels] = 0.9  # always right, not overconfident
    probs = torch.cat([perfect[None], random_probs(3, 300, 4, seed=7)])
    w = fit_weights(probs, labels)
    assert w[0] > 0.95
    assert float(w.sum()) == pytest.approx(1.0) and (w >= 0).all()
    assert nll(w, probs, labels) <= nll(torch.full((4,), 0.25), probs, labels)
    assert torch.equal(w, fit_weights(probs, labels))  # deterministic


def test_fit_weights_is_the_simplex_minimum() -> None:
    labels_np = np.random.default_rng(8).integers(0, 3, 200)
    probs = member_probs(labels_np, 3, [1.0, 1.5, 0.5], seed=9)
    labels = torch.from_numpy(labels_np)
    fitted = nll(fit_weights(probs, labels), probs, labels)
    grid = [
        nll(torch.tensor([a, b, 1 - a - b]), probs, labels)
        for a, b in itertools.product(np.linspace(0, 1, 51), repeat=2)
        if a + b <= 1 + 1e-12
    ]
    assert fitted <= min(grid) + 1e-9  # the NLL is convex in the weights: no better point
    with pytest.raises(ShapeMismatchError, match=r"\(200,\)"):
        fit_weights(probs, labels[:10])
    with pytest.raises(ConfigError, match=r"\[0, 3\)"):
        fit_weights(probs, labels + 1)


# ---------------------------------------------------------------- stacking


@pytest.fixture(scope="module")
def stacking_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = np.random.default_rng(10).integers(0, 3, 400)
    probs = member_probs(labels, 3, [1.0, 2.0, 0.5], seed=11)
    return probs[:, :300], torch.from_numpy(labels[:300]), probs[:, 300:]


def features(probs: torch.Tensor) -> np.ndarray:
    return np.concatenate([p.numpy() for p in probs], axis=1)  # member 0's K columns first


def test_stacker_with_fixed_C_matches_sklearn(stacking_data: tuple) -> None:
    train, labels, test = stacking_data
    stacker = Stacker(C=1.0).fit(train, labels)
    oracle = LogisticRegression(C=1.0, max_iter=1000).fit(features(train), labels.numpy())
    expected = oracle.predict_proba(features(test))
    np.testing.assert_allclose(stacker.predict_proba(test).numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(stacker.coef, oracle.coef_, atol=1e-10)  # member-major columns


def test_stacker_cross_validates_C_like_grid_search(stacking_data: tuple) -> None:
    train, labels, test = stacking_data
    stacker = Stacker(folds=5, seed=0).fit(train, labels)
    search = GridSearchCV(
        LogisticRegression(max_iter=1000),
        {"C": list(C_GRID)},
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="neg_log_loss",
    ).fit(features(train), labels.numpy())
    assert stacker.chosen_C == search.best_params_["C"]
    expected = search.best_estimator_.predict_proba(features(test))
    np.testing.assert_allclose(stacker.predict_proba(test).numpy(), expected, atol=1e-10)


def test_stacker_round_trips_through_json(stacking_data: tuple) -> None:
    train, labels, test = stacking_data
    stacker = Stacker(C=0.3).fit(train, labels)
    rebuilt = Stacker.from_dict(json.loads(json.dumps(stacker.to_dict())))
    assert torch.equal(rebuilt.predict_proba(test), stacker.predict_proba(test))


def test_stacker_binary_fills_absent_classes_with_zero(stacking_data: tuple) -> None:
    train, labels, test = stacking_data
    keep = labels != 1  # classes 0 and 2 of K = 3
    stacker = Stacker(C=1.0).fit(train[:, keep], labels[keep])
    oracle = LogisticRegression(C=1.0, max_iter=1000).fit(features(train[:, keep]), labels[keep])
    got = stacker.predict_proba(test).numpy()
    np.testing.assert_allclose(got[:, [0, 2]], oracle.predict_proba(features(test)), atol=1e-10)
    assert (got[:, 1] == 0).all()
    rebuilt = Stacker.from_dict(json.loads(json.dumps(stacker.to_dict())))
    assert torch.equal(rebuilt.predict_proba(test), stacker.predict_proba(test))


def test_stacker_refusals(stacking_data: tuple) -> None:
    train, labels, test = stacking_data
    with pytest.raises(ConfigError, match="at least 2 classes"):
        Stacker(C=1.0).fit(train, torch.zeros_like(labels))
    rare = labels.clone()
    rare[0] = 1
    rare[1:] = torch.where(labels[1:] == 1, 0, labels[1:])  # class 1 has one item
    with pytest.raises(ConfigError, match="pass C="):
        Stacker().fit(train, rare)
    with pytest.raises(ConfigError, match="never fitted"):
        Stacker().predict_proba(test)
    stacker = Stacker(C=1.0).fit(train, labels)
    with pytest.raises(ShapeMismatchError, match=r"\(3, N, 3\)"):
        stacker.predict_proba(test[:2])
    broken = stacker.to_dict() | {"coef": [[0.0] * 9] * 2}
    with pytest.raises(ConfigError, match=r"\(3, 9\)"):
        Stacker.from_dict(broken)


# ---------------------------------------------------------------- resampling


def test_out_of_fold_indices_partition_the_items() -> None:
    pairs = out_of_fold_indices(23, 5, seed=0)
    held = torch.cat([h for _, h in pairs])
    assert sorted(held.tolist()) == list(range(23))  # each item held out exactly once
    assert sorted(len(h) for _, h in pairs) == [4, 4, 5, 5, 5]
    for train, h in pairs:
        assert sorted(train.tolist() + h.tolist()) == list(range(23))
        assert train.tolist() == sorted(train.tolist())
    again = out_of_fold_indices(23, 5, seed=0)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(pairs, again, strict=True))
    other = out_of_fold_indices(23, 5, seed=1)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(pairs, other, strict=True))
    for folds in (1, 24):
        with pytest.raises(ConfigError, match=f"folds={folds}"):
            out_of_fold_indices(23, folds, seed=0)


def test_bootstrap_leaves_out_one_over_e() -> None:
    n = 100_000
    idx = bootstrap_indices(n, seed=0)
    assert idx.shape == (n,) and int(idx.min()) >= 0 and int(idx.max()) < n
    assert torch.equal(idx, bootstrap_indices(n, seed=0))
    out_of_bag = 1 - len(idx.unique()) / n
    expected = (1 - 1 / n) ** n  # -> 1/e, the published 36.8%
    assert abs(out_of_bag - expected) < 3 * math.sqrt(expected * (1 - expected) / n)
    with pytest.raises(ConfigError, match="n=0"):
        bootstrap_indices(0, seed=0)


# ---------------------------------------------------------------- diversity


def test_pairwise_disagreement_matches_loop() -> None:
    preds = torch.randint(0, 3, (4, 50), generator=torch.Generator().manual_seed(0))
    expected = np.zeros((4, 4))
    for i, j in itertools.product(range(4), repeat=2):
        expected[i, j] = np.mean([preds[i, n] != preds[j, n] for n in range(50)])
    np.testing.assert_allclose(pairwise_disagreement(preds).numpy(), expected, atol=1e-12)
    pairs = [expected[i, j] for i in range(4) for j in range(i + 1, 4)]
    assert mean_disagreement(preds) == pytest.approx(np.mean(pairs), abs=1e-12)
    with pytest.raises(ConfigError, match="M=1"):
        mean_disagreement(preds[:1])


# ---------------------------------------------------------------- boosting


def test_samme_step_by_hand() -> None:
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    preds, labels = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 1])
    alpha, new = samme_weights(w, preds, labels, num_classes=3)
    err = 0.4
    assert alpha == pytest.approx(np.log((1 - err) / err) + np.log(2))  # = log 3
    np.testing.assert_allclose(new.numpy(), np.array([0.1, 0.2, 0.3, 0.4 * 3]) / 1.8)
    alpha, new = samme_weights(w, labels, labels, num_classes=3)  # perfect member
    floor = SAMME_ERR_FLOOR
    assert alpha == pytest.approx(np.log((1 - floor) / floor) + np.log(2))
    torch.testing.assert_close(new, w)
    with pytest.raises(ConfigError, match="better than chance"):
        samme_weights(w, torch.tensor([0, 1, 0, 0]), labels, num_classes=3)  # err 0.7 >= 2/3
    with pytest.raises(ConfigError, match="better than chance"):
        samme_weights(w, torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 0, 0]), num_classes=2)


def adaboost_samme(n_estimators: int) -> AdaBoostClassifier:
    kwargs = (
        {"algorithm": "SAMME"}
        if "algorithm" in inspect.signature(AdaBoostClassifier).parameters
        else {}
    )
    return AdaBoostClassifier(
        DecisionTreeClassifier(max_depth=1), n_estimators=n_estimators, random_state=0, **kwargs
    )


def test_samme_and_boosted_vote_match_sklearn_adaboost() -> None:
    x, y = make_classification(
        400, n_features=6, n_informative=4, n_classes=3, n_clusters_per_class=1, random_state=0
    )
    model = adaboost_samme(4).fit(x, y)
    assert len(model.estimators_) == 4  # no early stop, so every step is comparable
    labels = torch.from_numpy(y)
    w = torch.full((len(y),), 1 / len(y), dtype=torch.float64)
    preds, alphas = [], []
    for i, tree in enumerate(model.estimators_):
        pred = torch.from_numpy(tree.predict(x).astype(np.int64))
        err = float(w[pred != labels].sum())
        assert err == pytest.approx(model.estimator_errors_[i], rel=1e-9)
        alpha, w = samme_weights(w, pred, labels, num_classes=3)
        assert alpha == pytest.approx(model.estimator_weights_[i], rel=1e-9)
        preds.append(pred)
        alphas.append(alpha)
    scores = boosted_vote(
        torch.stack(preds), torch.tensor(alphas, dtype=torch.float64), num_classes=3
    ).numpy()
    total = sum(alphas)  # sklearn scores w for a vote and -w/(K-1) otherwise, over sum(w)
    np.testing.assert_allclose((1.5 * scores - total / 2) / total, model.decision_function(x))
    assert (scores.argmax(1) == model.predict(x)).all()


def test_boosted_vote_matches_loop() -> None:
    preds = torch.randint(0, 4, (3, 20), generator=torch.Generator().manual_seed(1))
    alphas = torch.tensor([0.5, 1.2, 0.8])
    expected = np.zeros((20, 4))
    for m in range(3):
        for n in range(20):
            expected[n, int(preds[m, n])] += float(alphas[m])
    np.testing.assert_allclose(boosted_vote(preds, alphas, 4).numpy(), expected, rtol=1e-6)
    with pytest.raises(ShapeMismatchError, match=r"\(3,\)"):
        boosted_vote(preds, alphas[:2], 4)
    with pytest.raises(ConfigError, match=r"\[0, 3\)"):
        boosted_vote(preds, alphas, 3)
