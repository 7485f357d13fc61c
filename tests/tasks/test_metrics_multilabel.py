"""Multi-label AP, F1 and threshold choice against scikit-learn and a brute-force reference."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.tasks.metrics_multilabel import (
    MultilabelMetrics,
    average_precision,
    choose_thresholds,
)


def random_multilabel(
    n: int, k: int, seed: int, decimals: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores rounded to ``decimals`` (so many are tied) that carry some signal."""
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, k, generator=g) < 0.3).long()
    noisy = 0.35 * targets + 0.65 * torch.rand(n, k, generator=g)
    return noisy.round(decimals=decimals).clamp(0, 1), targets


@pytest.mark.parametrize(("seed", "decimals"), [(0, 1), (1, 1), (2, 2), (3, 6)])
def test_ap_matches_sklearn_with_ties(seed: int, decimals: int) -> None:
    scores, targets = random_multilabel(200, 6, seed, decimals)
    s, y = scores.numpy(), targets.numpy()
    if decimals <= 2:
        assert np.unique(s[:, 0]).size < s.shape[0]  # ties are present
    ours = average_precision(scores, targets)
    sk = [average_precision_score(y[:, j], s[:, j]) for j in range(6)]
    np.testing.assert_allclose(ours.numpy(), sk, rtol=0, atol=1e-12)
    m = MultilabelMetrics(6)
    m.update(scores, targets)
    out = m.compute()
    assert out["macro_ap"] == pytest.approx(
        average_precision_score(y, s, average="macro"), abs=1e-12
    )
    assert out["micro_ap"] == pytest.approx(
        average_precision_score(y, s, average="micro"), abs=1e-12
    )


def test_ap_by_hand_is_not_interpolated() -> None:
    # thresholds 0.9, 0.8 (a tie of one positive and one negative), 0.7, 0.6:
    # R = 1/3, 2/3, 2/3, 1 and P = 1, 2/3, 2/4, 3/5 -> AP = (1 + 2/3 + 3/5) / 3
    scores = torch.tensor([[0.9], [0.8], [0.8], [0.7], [0.6]])
    targets = torch.tensor([[1], [1], [0], [0], [1]])
    expected = (1 + 2 / 3 + 3 / 5) / 3  # interpolation would use max(P) = 2/3 for the last step
    assert float(average_precision(scores, targets)[0]) == pytest.approx(expected, abs=1e-15)


def test_class_without_positives_is_left_out_of_macro_ap() -> None:
    scores, targets = random_multilabel(120, 5, seed=4)
    targets[:, [1, 3]] = 0
    m = MultilabelMetrics(5)
    m.update(scores, targets)
    out = m.compute()
    assert math.isnan(out["per_class_ap"][1]) and math.isnan(out["per_class_ap"][3])
    kept = [0, 2, 4]
    expected = average_precision_score(targets[:, kept].numpy(), scores[:, kept].numpy())
    assert out["macro_ap"] == pytest.approx(expected, abs=1e-12)
    micro = average_precision_score(targets.numpy(), scores.numpy(), average="micro")
    assert out["micro_ap"] == pytest.approx(micro, abs=1e-12)


def test_no_positive_anywhere_gives_nan_ap_and_zero_f1() -> None:
    m = MultilabelMetrics(3)
    m.update(torch.full((10, 3), 0.2), torch.zeros(10, 3))
    out = m.compute()
    assert math.isnan(out["macro_ap"]) and math.isnan(out["micro_ap"])
    # nothing true and nothing predicted: a perfect subset match, yet F1 is 0 (zero_division=0)
    assert out["exact_match"] == 1.0
    y = np.zeros((10, 3), dtype=int)
    results: dict[str, Any] = dict(out)
    for key, average in (("sample_f1", "samples"), ("macro_f1", "macro"), ("micro_f1", "micro")):
        assert results[key] == f1_score(y, y, average=average, zero_division=0) == 0.0


@pytest.mark.parametrize("per_class", [False, True])
def test_f1_and_exact_match_match_sklearn_over_batches(per_class: bool) -> None:
    scores, targets = random_multilabel(300, 7, seed=5)
    scores[:40] = 0.0  # samples with no prediction, some with no label: zero_division=0
    targets[:20] = 0
    targets[:, 6] = 0  # a class never true ...
    scores[:, 6] = 0.0  # ... and never predicted
    thresholds = torch.linspace(0.3, 0.7, 7) if per_class else 0.5
    m = MultilabelMetrics(7)
    for lo in range(0, 300, 64):  # batches of different sizes, the last one short
        m.update(scores[lo : lo + 64], targets[lo : lo + 64])
    out = m.compute(thresholds)
    thr = np.asarray(thresholds if per_class else [0.5] * 7)
    y, pred = targets.numpy(), (scores.numpy() >= thr).astype(int)
    results: dict[str, Any] = dict(out)
    for key, average in (("sample_f1", "samples"), ("macro_f1", "macro"), ("micro_f1", "micro")):
        expected = f1_score(y, pred, average=average, zero_division=0)
        assert results[key] == pytest.approx(expected, abs=1e-12), key
    per = f1_score(y, pred, average=None, zero_division=0)
    np.testing.assert_allclose(out["per_class_f1"], per, rtol=0, atol=1e-12)
    assert out["exact_match"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert 0 < out["exact_match"] < 1


def test_batches_equal_one_big_update() -> None:
    scores, targets = random_multilabel(90, 4, seed=6)
    one, many = MultilabelMetrics(4), MultilabelMetrics(4)
    one.update(scores, targets)
    for lo in range(0, 90, 25):
        many.update(scores[lo : lo + 25], targets[lo : lo + 25])
    many.update(scores[:0], targets[:0])  # an empty batch adds nothing
    np.testing.assert_equal(dict(one.compute()), dict(many.compute()))  # nan equals nan


def test_nothing_seen_and_reset() -> None:
    m = MultilabelMetrics(3)
    out = m.compute()
    assert all(math.isnan(v) for v in out.values() if isinstance(v, float))
    assert len(out["per_class_ap"]) == 3 and math.isnan(out["per_class_ap"][0])
    m.update(torch.full((4, 3), 0.9), torch.ones(4, 3))
    assert m.compute()["exact_match"] == 1.0
    m.reset()
    assert math.isnan(m.compute()["exact_match"])


def brute_force_thresholds(s: np.ndarray, y: np.ndarray, grid: np.ndarray | None) -> np.ndarray:
    """Best F1 per column by trying every candidate, exact fractions, smallest on ties."""
    best = np.full(s.shape[1], 0.5)
    for j in range(s.shape[1]):
        if y[:, j].sum() == 0:
            continue
        candidates = np.unique(s[:, j]) if grid is None else np.unique(grid)
        top = Fraction(-1)
        for t in candidates:  # ascending, so a later tie never replaces an earlier one
            pred = s[:, j] >= t
            tp = int((pred & (y[:, j] == 1)).sum())
            den = int(pred.sum()) + int(y[:, j].sum())
            f1 = Fraction(2 * tp, den) if den else Fraction(0)
            if f1 > top:
                top, best[j] = f1, t
    return best


@pytest.mark.parametrize("use_grid", [False, True])
@pytest.mark.parametrize("seed", [7, 8, 9])
def test_choose_thresholds_matches_brute_force(seed: int, use_grid: bool) -> None:
    scores, targets = random_multilabel(80, 5, seed, decimals=2)
    targets[:, 2] = 0  # keeps 0.5
    grid = torch.tensor([0.9, 0.1, 0.3, 0.5, 0.05, 0.7, 0.95]) if use_grid else None
    ours = choose_thresholds(scores, targets, grid)
    s, y = scores.double().numpy(), targets.numpy()
    expected = brute_force_thresholds(s, y, None if grid is None else grid.double().numpy())
    np.testing.assert_array_equal(ours.numpy(), expected)
    assert ours[2] == 0.5
    # the chosen thresholds give each class its best F1 on this data
    m = MultilabelMetrics(5)
    m.update(scores, targets)
    assert torch.equal(m.choose_thresholds(grid), ours)
    tuned, default = m.compute(ours)["per_class_f1"], m.compute(0.5)["per_class_f1"]
    assert all(a >= b for a, b in zip(tuned, default, strict=True))


def test_choose_thresholds_ties_take_the_smaller_threshold() -> None:
    # F1 at 0.9 is 2/3, at 0.6 it is 4/6 = 2/3 as well: the smaller one wins.
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.6], [0.2]])
    targets = torch.tensor([[1], [0], [0], [1], [0]])
    assert float(choose_thresholds(scores, targets)[0]) == pytest.approx(0.6)
    grid = torch.tensor([0.85, 0.55, 0.1])  # 0.85 -> 2/3, 0.55 -> 2/3, 0.1 -> 4/7
    assert float(choose_thresholds(scores, targets, grid)[0]) == pytest.approx(0.55)
    empty = choose_thresholds(torch.zeros(0, 2), torch.zeros(0, 2))
    assert empty.tolist() == [0.5, 0.5]


def test_errors_name_what_was_received() -> None:
    m = MultilabelMetrics(3)
    with pytest.raises(ShapeMismatchError, match=r"scores \(4, 3\) and targets \(4, 2\)"):
        m.update(torch.rand(4, 3), torch.zeros(4, 2))
    with pytest.raises(ShapeMismatchError, match=r"Expected scores \(N, 3\), received \(4, 2\)"):
        m.update(torch.rand(4, 2), torch.zeros(4, 2))
    with pytest.raises(ConfigError, match=r"apply sigmoid.*received -1\.5"):
        m.update(torch.tensor([[0.2, -1.5, 0.3]]), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="received nan"):
        m.update(torch.tensor([[0.2, math.nan, 0.3]]), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="targets of 0/1, received 2"):
        m.update(torch.rand(1, 3), torch.tensor([[0, 2, 1]]))
    with pytest.raises(ShapeMismatchError, match=r"\(3,\) thresholds, received \(2,\)"):
        m.compute(torch.tensor([0.5, 0.5]))
    with pytest.raises(ConfigError, match=r"num_classes an int >= 1, received 0"):
        MultilabelMetrics(0)
    with pytest.raises(ConfigError, match="finite grid"):
        choose_thresholds(torch.rand(4, 3), torch.ones(4, 3), torch.tensor([0.5, math.inf]))
