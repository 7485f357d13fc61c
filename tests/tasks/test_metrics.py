"""Weighted mean, segmentation and keypoint metrics against scikit-learn and NumPy loops."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, jaccard_score

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.tasks.metrics import KeypointMetrics, Mean, SegmentationMetrics

# ---------------------------------------------------------------- Mean


def test_mean_weights_by_batch_size() -> None:
    values, sizes = [2.5, 0.25, 1.0, 7.0], [32, 32, 5, 0]
    m = Mean()
    for v, n in zip(values, sizes, strict=True):
        m.update(torch.tensor(v, requires_grad=True) * 1, n)  # a loss with a graph
    assert m.count == 69
    assert m.compute() == pytest.approx(np.average(values, weights=sizes), rel=1e-15)


def test_mean_keeps_float64() -> None:
    m = Mean()
    m.update(1.0 + 1e-12, 3)  # float32 would round this to 1.0
    m.update(torch.tensor(1.0 + 1e-12, dtype=torch.float64), 1)
    assert m.compute() == 1.0 + 1e-12


def test_mean_empty_reset_and_errors() -> None:
    m = Mean()
    assert math.isnan(m.compute())
    m.update(3.0, 0)
    assert math.isnan(m.compute())
    m.update(3.0, 2)
    m.reset()
    assert math.isnan(m.compute()) and m.count == 0
    with pytest.raises(ConfigError, match="received n=-1"):
        m.update(1.0, -1)
    with pytest.raises(ShapeMismatchError, match=r"scalar value, received shape \(2,\)"):
        m.update(torch.ones(2), 2)


# ---------------------------------------------------------------- segmentation

K, IGNORE = 6, 255


def random_masks(seed: int, n: int = 3, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 4 absent from both; class 5 only ever predicted; about 10% of pixels ignored."""
    g = torch.Generator().manual_seed(seed)
    target = torch.tensor([0, 1, 2, 3])[torch.randint(0, 4, (n, size, size), generator=g)]
    pred = torch.where(torch.rand(n, size, size, generator=g) < 0.6, target, 0)
    noise = torch.tensor([0, 1, 2, 3, 5])[torch.randint(0, 5, (n, size, size), generator=g)]
    pred = torch.where(torch.rand(n, size, size, generator=g) < 0.3, noise, pred)
    ignored = torch.rand(n, size, size, generator=g) < 0.1
    target = target.masked_fill(ignored, IGNORE)
    pred = pred.masked_fill(ignored & (torch.rand(n, size, size, generator=g) < 0.5), IGNORE)
    return pred, target


def sklearn_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    keep = target.reshape(-1) != IGNORE
    t, p = target.reshape(-1)[keep].numpy(), pred.reshape(-1)[keep].numpy()
    present = sorted(set(t.tolist()) | set(p.tolist()))
    iou = np.full(K, np.nan)
    dice = np.full(K, np.nan)
    iou[present] = jaccard_score(t, p, labels=present, average=None)
    dice[present] = f1_score(t, p, labels=present, average=None)
    return {
        "per_class_iou": iou,
        "per_class_dice": dice,
        "miou": float(np.nanmean(iou)),
        "mean_dice": float(np.nanmean(dice)),
        "pixel_accuracy": accuracy_score(t, p),
        "fg_iou": jaccard_score(t != 0, p != 0),
        "confusion": confusion_matrix(t, p, labels=list(range(K))),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segmentation_matches_sklearn_over_batches(seed: int) -> None:
    m = SegmentationMetrics(K, ignore_index=IGNORE)
    batches = [random_masks(seed * 10 + i, n=i + 1) for i in range(3)]
    for pred, target in batches:
        m.update(pred, target)
    out = m.compute()
    expected = sklearn_scores(
        torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches])
    )
    np.testing.assert_array_equal(m.confusion_matrix.numpy(), expected["confusion"])
    results: dict[str, Any] = dict(out)
    for key in ("per_class_iou", "per_class_dice"):
        np.testing.assert_allclose(results[key], expected[key], rtol=0, atol=1e-12)
    for key in ("miou", "mean_dice", "pixel_accuracy", "fg_iou"):
        assert results[key] == pytest.approx(expected[key], abs=1e-12), key
    # policy: absent from both -> nan and left out; predicted only -> 0 and counted
    assert math.isnan(out["per_class_iou"][4]) and math.isnan(out["per_class_dice"][4])
    assert out["per_class_iou"][5] == 0.0 and out["per_class_dice"][5] == 0.0
    assert out["miou"] == pytest.approx(np.mean([out["per_class_iou"][c] for c in (0, 1, 2, 3, 5)]))


def test_batches_equal_one_big_update_and_logits_equal_ids() -> None:
    pred, target = random_masks(3, n=4)
    one, many, logits = (SegmentationMetrics(K) for _ in range(3))
    one.update(pred, target)
    for i in range(4):
        many.update(pred[i : i + 1], target[i : i + 1])
    many.update(pred[:0], target[:0])  # an empty batch adds nothing
    scores = torch.nn.functional.one_hot(pred.clamp(max=K - 1), K).permute(0, 3, 1, 2).float()
    logits.update(scores + 0.1 * torch.rand_like(scores), target)
    assert torch.equal(one.confusion_matrix, many.confusion_matrix)
    assert torch.equal(one.confusion_matrix, logits.confusion_matrix)  # 255s sit on ignored pixels
    np.testing.assert_equal(dict(one.compute()), dict(many.compute()))  # nan equals nan


def test_binary_foreground_iou_and_no_ignore() -> None:
    target = torch.tensor([[[0, 1, 2], [0, 0, 2]]])
    pred = torch.tensor([[[0, 2, 0], [1, 0, 2]]])
    m = SegmentationMetrics(3, ignore_index=None)
    m.update(pred, target)
    # foreground: target {1, 2, 5}, pred {1, 3, 5} (flat indices) -> 2 / 4
    assert m.compute()["fg_iou"] == pytest.approx(0.5)
    assert m.compute()["pixel_accuracy"] == pytest.approx(3 / 6)
    with pytest.raises(ConfigError, match=r"target class ids in \[0, 3\), received 255"):
        m.update(pred, torch.full_like(target, 255))


def test_nothing_seen_is_nan_and_reset() -> None:
    m = SegmentationMetrics(3)
    out = m.compute()
    assert math.isnan(out["miou"]) and math.isnan(out["pixel_accuracy"])
    assert all(math.isnan(v) for v in out["per_class_iou"])
    m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))  # all ignored
    assert math.isnan(m.compute()["miou"])
    m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    assert m.compute()["miou"] == 1.0 and math.isnan(m.compute()["fg_iou"])
    m.reset()
    assert m.confusion_matrix.sum() == 0


def test_segmentation_errors_name_the_value_and_range() -> None:
    m = SegmentationMetrics(4)
    ok = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(
        ConfigError, match=r"target class ids in \[0, 4\) \(or ignore_index=255\), received 7"
    ):
        m.update(ok, torch.tensor([[[0, 7], [1, 255]]]))
    with pytest.raises(ConfigError, match=r"pred class ids in \[0, 4\).*received -1"):
        m.update(torch.tensor([[[0, -1], [1, 1]]]), ok)
    for too_big in (4, 255):  # a prediction may not abstain where the target counts
        with pytest.raises(ConfigError, match=rf"pred class ids in \[0, 4\).*received {too_big}"):
            m.update(torch.tensor([[[0, too_big], [1, 1]]]), ok)
    with pytest.raises(ShapeMismatchError, match=r"pred \(1, 2, 3\) and target \(1, 2, 2\)"):
        m.update(torch.zeros(1, 2, 3, dtype=torch.long), ok)
    with pytest.raises(
        ShapeMismatchError, match=r"4 classes at dim 1, received pred \(1, 3, 2, 2\)"
    ):
        m.update(torch.rand(1, 3, 2, 2), ok)
    with pytest.raises(ConfigError, match="integer class ids"):
        m.update(torch.rand(1, 2, 2), ok)
    with pytest.raises(ConfigError, match="integer target"):
        m.update(ok, ok.float())
    with pytest.raises(
        ConfigError, match=r"outside the class ids \[0, 4\), received ignore_index=0"
    ):
        SegmentationMetrics(4, ignore_index=0)
    assert m.confusion_matrix.sum() == 0  # a refused batch leaves no trace


# ---------------------------------------------------------------- keypoints


def numpy_keypoints(
    pred: np.ndarray, target: np.ndarray, visible: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Loops over every (sample, keypoint); the plain definition of each score."""
    n, p, _ = pred.shape
    sq, dist, within, per_sq, per_n = [], [], 0, np.zeros(p), np.zeros(p)
    for i in range(n):
        for j in range(p):
            if not visible[i, j]:
                continue
            dx, dy = pred[i, j] - target[i, j]
            sq += [dx * dx, dy * dy]
            d = math.hypot(dx, dy)
            dist.append(d)
            within += d <= threshold
            per_sq[j] += dx * dx + dy * dy
            per_n[j] += 2
    with np.errstate(invalid="ignore"):
        per = np.sqrt(per_sq / per_n)
    return {
        "rmse_px": math.sqrt(np.mean(sq)),
        "mean_distance_px": float(np.mean(dist)),
        "pck": within / len(dist),
        "per_keypoint_rmse": per,
    }


def random_keypoints(seed: int, n: int, p: int = 15) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, p, 2, generator=g, dtype=torch.float64) * 96
    pred = target + torch.randn(n, p, 2, generator=g, dtype=torch.float64) * 4
    visible = torch.rand(n, p, generator=g) < 0.7
    visible[:, 3] = False  # a keypoint never visible: nan in the per-keypoint list
    target = target.masked_fill(~visible.unsqueeze(2), math.nan)  # Kaggle's missing entries
    return pred.float(), target.float(), visible


def test_keypoints_match_numpy_loops_over_batches() -> None:
    m = KeypointMetrics(96, pck_alpha=0.05)
    batches = [random_keypoints(seed, n) for seed, n in ((0, 7), (1, 1), (2, 12))]
    for pred, target, visible in batches:
        m.update(pred, target, visible)
    out = m.compute()
    p, t, v = (torch.cat(parts).double().numpy() for parts in zip(*batches, strict=True))
    expected = numpy_keypoints(p, t, v.astype(bool), threshold=0.05 * 96)
    for key in ("rmse_px", "mean_distance_px", "pck"):
        assert out[key] == pytest.approx(expected[key], rel=1e-12), key
    np.testing.assert_allclose(out["per_keypoint_rmse"], expected["per_keypoint_rmse"], rtol=1e-12)
    assert math.isnan(out["per_keypoint_rmse"][3])
    assert 0.2 < out["pck"] < 0.9  # the threshold cuts through the errors
    # Kaggle's RMSE: the 2P columns flattened, missing entries dropped
    flat = (p - t).reshape(len(p), -1)
    assert out["rmse_px"] == pytest.approx(math.sqrt(np.nanmean(flat**2)), rel=1e-12)


def test_pck_threshold_uses_the_longer_side_inclusive() -> None:
    m = KeypointMetrics((50, 200), pck_alpha=0.05)  # 0.05 * max(50, 200) = 10 px
    target = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[6.0, 8.0], [8.0, 0.0], [6.0, 8.01]]])  # 10 (on the line), 8, 10.006
    m.update(pred, target)
    assert m.compute()["pck"] == pytest.approx(2 / 3)
    assert m.pck_threshold_px == 10.0
    m.reset()
    m.update(pred, target, visible=torch.tensor([[False, True, False]]))
    out = m.compute()
    assert out["pck"] == 1.0 and out["mean_distance_px"] == 8.0
    assert out["rmse_px"] == pytest.approx(math.sqrt(64 / 2))


def test_keypoints_nothing_seen_and_errors() -> None:
    m = KeypointMetrics(64)
    assert math.isnan(m.compute()["rmse_px"]) and m.compute()["per_keypoint_rmse"] == []
    m.update(torch.zeros(0, 5, 2), torch.zeros(0, 5, 2))
    assert math.isnan(m.compute()["pck"])
    with pytest.raises(ShapeMismatchError, match=r"pred \(2, 5, 2\) and target \(2, 4, 2\)"):
        m.update(torch.zeros(2, 5, 2), torch.zeros(2, 4, 2))
    with pytest.raises(ShapeMismatchError, match=r"visible \(2, 5\) .* received visible \(2, 4\)"):
        m.update(torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ShapeMismatchError, match=r"5 keypoints as in earlier batches"):
        m.update(torch.zeros(2, 6, 2), torch.zeros(2, 6, 2))
    with pytest.raises(
        ShapeMismatchError, match=r"Expected pred \(N, P, 2\), received \(2, 5, 3\)"
    ):
        KeypointMetrics(64).update(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3))
    with pytest.raises(ConfigError, match="received pck_alpha=0"):
        KeypointMetrics(64, pck_alpha=0)
    with pytest.raises(ConfigError, match=r"W an int >= 1, received W=0"):
        KeypointMetrics((64, 0))
