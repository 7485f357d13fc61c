"""Weighted boxes fusion against hand-computed boxes and the ``ensemble-boxes`` package
(the paper's reference code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.core.errors import DataFormatError, ShapeMismatchError
from cnnlab.tasks.box_fusion import weighted_boxes_fusion


def wbf(boxes: list, scores: list, labels: list, **kwargs: object) -> tuple:
    out = weighted_boxes_fusion(
        [torch.tensor(b, dtype=torch.float64).reshape(-1, 4) for b in boxes],
        [torch.tensor(s, dtype=torch.float64) for s in scores],
        [torch.tensor(c) for c in labels],
        **kwargs,  # type: ignore[arg-type]
    )
    return out[0].tolist(), out[1].tolist(), out[2].tolist()


def test_wbf_overlapping_boxes_fuse_to_score_weighted_mean() -> None:
    a, b = [0, 0, 10, 10], [1, 1, 11, 11]  # IoU 81/119 = 0.68
    boxes, scores, labels = wbf([[a], [b]], [[0.9], [0.6]], [[0], [0]])
    np.testing.assert_allclose(
        boxes, [[(0.9 * p + 0.6 * q) / 1.5 for p, q in zip(a, b, strict=True)]]
    )
    assert scores == pytest.approx([0.75]) and labels == [0]  # mean 0.75 * min(2, 2) / 2
    boxes, scores, _ = wbf([[a], [b]], [[0.9], [0.6]], [[0], [0]], weights=[2.0, 1.0])
    np.testing.assert_allclose(
        boxes, [[(1.8 * p + 0.6 * q) / 2.4 for p, q in zip(a, b, strict=True)]]
    )
    assert scores == pytest.approx([1.2 * 2 / 3])  # weighted mean * min(2, 2) / sum(w)


def test_wbf_separate_boxes_and_labels_never_fuse() -> None:
    a, far = [0, 0, 10, 10], [20, 20, 30, 30]
    boxes, scores, labels = wbf([[a], [far]], [[0.9], [0.6]], [[0], [0]])
    assert boxes == [a, far] and scores == pytest.approx([0.45, 0.3]) and labels == [0, 0]
    boxes, scores, labels = wbf([[a], [a]], [[0.6], [0.9]], [[0], [1]])
    assert boxes == [a, a] and scores == pytest.approx([0.45, 0.3]) and labels == [1, 0]


def test_wbf_matches_against_the_fused_box_and_rescales_by_members() -> None:
    first, second, third = [0, 0, 10, 10], [3, 0, 13, 10], [4, 0, 14, 10]
    # third overlaps first by 0.43 only, but the fused (first, second) box by 0.59
    boxes, scores, _ = wbf(
        [[first], [second], [third]], [[0.9], [0.8], [0.7]], [[0]] * 3, iou_thr=0.5
    )
    x1 = (0.8 * 3 + 0.7 * 4) / 2.4
    np.testing.assert_allclose(boxes, [[x1, 0, x1 + 10, 10]])
    assert scores == pytest.approx([0.8])  # mean 0.8 * min(3, 3) / 3
    # member 0 finds the object twice: three boxes from two members, min(3, 2) / 2 = 1
    boxes, scores, _ = wbf(
        [[first, [0, 0, 10, 11]], [[1, 1, 11, 11]]], [[0.9, 0.6], [0.3]], [[0, 0], [0]]
    )
    assert len(boxes) == 1 and scores == pytest.approx([0.6])


def test_wbf_skips_and_refusals() -> None:
    a, b = [0, 0, 10, 10], [1, 1, 11, 11]
    boxes, scores, _ = wbf([[a], [b]], [[0.9], [0.1]], [[0], [0]], skip_box_thr=0.2)
    assert boxes == [a] and scores == pytest.approx([0.45])
    boxes, scores, labels = wbf([[], []], [[], []], [[], []])
    assert boxes == [] and scores == [] and labels == []
    assert wbf([[[0, 0, 0, 10]]], [[0.9]], [[0]])[0] == []  # zero area: dropped
    with pytest.raises(DataFormatError, match="member 1"):
        wbf([[a], [[5, 5, 1, 1]]], [[0.9], [0.6]], [[0], [0]])
    with pytest.raises(ShapeMismatchError, match="1, 2 and 2"):
        wbf([[a]], [[0.9], [0.6]], [[0], [0]])
    with pytest.raises(ShapeMismatchError, match=r"\(2,\)"):
        wbf([[a], [b]], [[0.9], [0.6]], [[0], [0]], weights=[1.0])


def random_detections(seed: int, members: int = 3) -> tuple[list, list, list]:
    """Members that see the same few objects, jittered, sometimes missed, plus clutter."""
    rng = np.random.default_rng(seed)
    objects = rng.uniform(0.05, 0.6, (8, 2))
    sizes = rng.uniform(0.1, 0.3, (8, 2))
    boxes, scores, labels = [], [], []
    for _ in range(members):
        seen = rng.random(8) < 0.8
        corner = objects[seen] + rng.normal(0, 0.02, (seen.sum(), 2))
        b = np.concatenate([corner, corner + sizes[seen]], 1)
        clutter = rng.uniform(0, 0.7, (3, 2))
        b = np.clip(np.concatenate([b, np.concatenate([clutter, clutter + 0.2], 1)]), 0, 1)
        boxes.append(b)
        scores.append(rng.uniform(0.05, 1.0, len(b)))
        labels.append(np.concatenate([np.arange(8)[seen] % 2, rng.integers(0, 2, 3)]))
    return boxes, scores, labels


@pytest.mark.parametrize(
    "seed, iou_thr, skip_box_thr, weights",
    [
        (0, 0.55, 0.0, None),
        (1, 0.4, 0.2, None),
        (2, 0.55, 0.0, [2.0, 1.0, 0.5]),
        (3, 0.7, 0.1, [1, 3, 1]),
    ],
)
def test_wbf_matches_ensemble_boxes(
    seed: int, iou_thr: float, skip_box_thr: float, weights: list | None
) -> None:
    ensemble_boxes = pytest.importorskip(
        "ensemble_boxes",
        reason="the ensemble-boxes package (the paper's reference code) is not installed",
    )
    boxes, scores, labels = random_detections(seed)
    ref = ensemble_boxes.weighted_boxes_fusion(
        boxes, scores, labels, weights=weights, iou_thr=iou_thr, skip_box_thr=skip_box_thr
    )
    got = weighted_boxes_fusion(
        [torch.from_numpy(b) for b in boxes],
        [torch.from_numpy(s) for s in scores],
        [torch.from_numpy(c) for c in labels],
        iou_thr=iou_thr,
        skip_box_thr=skip_box_thr,
        weights=weights,
    )
    assert len(got[0]) == len(ref[0]) > 3
    # the reference keeps fused boxes in float32
    np.testing.assert_allclose(got[0].numpy(), ref[0], atol=1e-5)
    np.testing.assert_allclose(got[1].numpy(), ref[1], atol=1e-5)
    np.testing.assert_array_equal(got[2].numpy(), ref[2])
