"""Box ops against pycocotools, NumPy, finite differences and a brute-force greedy NMS."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError
from cnnlab.tasks.boxes import (
    FORMATS,
    BoxFormat,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    check_boxes,
    clip_boxes,
    degenerate,
    generalized_box_iou,
    generalized_box_iou_loss,
    nms,
    remove_small_boxes,
)


def random_boxes(
    n: int, seed: int, dtype: torch.dtype = torch.float64, grid: bool = False, extent: float = 50.0
) -> Tensor:
    """xyxy boxes (n, 4) with positive width and height in [0, extent + 30].

    ``grid`` puts the corners on integers, so areas are exact and some IoUs land exactly
    on the NMS thresholds.
    """
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * extent
    wh = 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 29
    if grid:
        xy, wh = xy.round(), wh.round()
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


# ---------------------------------------------------------------- formats and area


def test_box_convert_hand_values() -> None:
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 8.0]])
    xywh = torch.tensor([[1.0, 2.0, 4.0, 6.0]])
    cxcywh = torch.tensor([[3.0, 5.0, 4.0, 6.0]])
    by_fmt: dict[BoxFormat, Tensor] = {"xyxy": xyxy, "xywh": xywh, "cxcywh": cxcywh}
    for src, a in by_fmt.items():
        for dst, b in by_fmt.items():
            torch.testing.assert_close(box_convert(a, src, dst), b, rtol=0, atol=0)
    assert box_area(xyxy).tolist() == [24.0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_box_convert_round_trip(fmt: BoxFormat) -> None:
    boxes = random_boxes(32, seed=1).reshape(4, 8, 4)  # any leading shape
    there = box_convert(boxes, "xyxy", fmt)
    assert there.shape == boxes.shape
    torch.testing.assert_close(box_convert(there, fmt, "xyxy"), boxes)


def test_box_convert_refuses_bad_input() -> None:
    unknown: Any = "xy"  # Any: past the Literal type, as a YAML config would be
    with pytest.raises(ConfigError, match=r"in_fmt one of xyxy, xywh, cxcywh, received 'xy'"):
        box_convert(torch.zeros(1, 4), unknown, "xyxy")
    with pytest.raises(ShapeMismatchError, match=r"\(\.\.\., 4\), received \(2, 5\)"):
        box_convert(torch.zeros(2, 5), "xyxy", "xywh")


def test_degenerate_clip_and_remove_small() -> None:
    boxes = torch.tensor([[0.0, 0, 4, 4], [2, 2, 2, 5], [1, 3, 6, 3], [-3, -1, 12, 9]])
    assert degenerate(boxes).tolist() == [False, True, True, False]
    clipped = clip_boxes(boxes, (8, 10))  # (height, width)
    assert clipped.tolist() == [[0, 0, 4, 4], [2, 2, 2, 5], [1, 3, 6, 3], [0, 0, 10, 8]]
    small = torch.tensor([[0.0, 0, 4, 4], [0, 0, 1, 4], [0, 0, 4, 2.5], [0, 0, 3, 3]])
    assert remove_small_boxes(small, 3.0).tolist() == [0, 3]
    assert remove_small_boxes(small, 3.0).dtype == torch.int64


# ---------------------------------------------------------------- IoU and GIoU


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_iou_matches_pycocotools(seed: int) -> None:
    a, b = random_boxes(40, seed), random_boxes(30, seed + 100)
    expected = mask_utils.iou(
        box_convert(a, "xyxy", "xywh").numpy(),
        box_convert(b, "xyxy", "xywh").numpy(),
        np.zeros(len(b), dtype=np.uint8),
    )
    got = box_iou(a, b)
    assert got.shape == (40, 30)
    assert 0 < (expected > 0).mean() < 1  # both overlapping and disjoint pairs
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(box_iou(a.float(), b.float()).numpy(), expected, atol=1e-6)


def numpy_giou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise GIoU straight from the definition: IoU - (C - U) / C."""
    a, b = a[:, None, :], b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
    ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    enclose = cw * ch
    return inter / union - (enclose - union) / enclose


def test_generalized_box_iou_matches_numpy() -> None:
    a, b = random_boxes(25, seed=3), random_boxes(20, seed=4)
    got = generalized_box_iou(a, b)
    expected = numpy_giou(a.numpy(), b.numpy())
    assert (expected < 0).any() and (expected > 0).any()  # disjoint pairs go negative
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    # GIoU of a box with itself is 1; it is never above IoU
    torch.testing.assert_close(generalized_box_iou(a, a).diagonal(), torch.ones(25, dtype=a.dtype))
    assert (got <= box_iou(a, b) + 1e-12).all()


def test_giou_loss_matches_pairwise_and_reduces() -> None:
    a, b = random_boxes(16, seed=5), random_boxes(16, seed=6)
    loss = generalized_box_iou_loss(a, b)
    torch.testing.assert_close(loss, 1 - generalized_box_iou(a, b).diagonal(), rtol=0, atol=1e-8)
    torch.testing.assert_close(generalized_box_iou_loss(a, b, "sum"), loss.sum())
    torch.testing.assert_close(generalized_box_iou_loss(a, b, "mean"), loss.mean())
    empty = torch.zeros(0, 4)
    assert generalized_box_iou_loss(empty, empty, "mean").item() == 0.0
    unknown: Any = "avg"
    with pytest.raises(ConfigError, match="received 'avg'"):
        generalized_box_iou_loss(a, b, unknown)
    with pytest.raises(ShapeMismatchError, match=r"as a \(16, 4\), received \(15, 4\)"):
        generalized_box_iou_loss(a, b[:15])


def test_giou_loss_gradcheck() -> None:
    a = random_boxes(6, seed=7).requires_grad_()
    b = random_boxes(6, seed=8).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: generalized_box_iou_loss(x, y, "sum"), (a, b))


def test_giou_loss_is_finite_on_degenerate_boxes() -> None:
    # point on point, point inside a box, zero-width line vs box, disjoint points
    a = torch.tensor([[3.0, 3, 3, 3], [2, 2, 2, 2], [1, 0, 1, 5], [0, 0, 0, 0]], requires_grad=True)
    b = torch.tensor([[3.0, 3, 3, 3], [0, 0, 4, 4], [0, 0, 4, 4], [5, 5, 5, 5]], requires_grad=True)
    loss = generalized_box_iou_loss(a, b)
    assert torch.isfinite(loss).all()
    assert loss[0].item() == pytest.approx(1.0)  # GIoU 0: no overlap, no gap
    assert loss[1].item() == pytest.approx(1.0)  # the box is the enclosing box: no gap
    assert loss[3].item() == pytest.approx(2.0)  # IoU 0, enclosing box all gap: GIoU -1
    loss.sum().backward()
    assert a.grad is not None and b.grad is not None
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


# ---------------------------------------------------------------- NMS


def python_iou(a: list[float], b: list[float]) -> float:
    """IoU with the same operation order as box_iou, so float64 results agree exactly."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def reference_nms(boxes: Tensor, scores: Tensor, threshold: float) -> list[int]:
    """Brute-force greedy NMS: by decreasing score, lower index first on ties."""
    rows, s = boxes.tolist(), scores.tolist()
    kept: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: (-s[i], i)):
        if not any(python_iou(rows[j], rows[i]) > threshold for j in kept):
            kept.append(i)
    return kept


def tied_scores(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g) * 10).floor() / 10  # 10 values for n boxes: many ties


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.65])
def test_nms_matches_greedy_reference(seed: int, threshold: float) -> None:
    boxes, scores = random_boxes(60, seed), tied_scores(60, seed)
    expected = reference_nms(boxes, scores, threshold)
    assert 0 < len(expected) < 60  # something is suppressed, something kept
    got = nms(boxes, scores, threshold)
    assert got.dtype == torch.int64
    assert got.tolist() == expected


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("threshold", [0.25, 0.5])
def test_nms_float32_grid_boxes_hit_the_threshold(seed: int, threshold: float) -> None:
    boxes = random_boxes(80, seed, dtype=torch.float32, grid=True, extent=20)
    scores = tied_scores(80, seed)
    rows = boxes.tolist()
    on_threshold = sum(python_iou(a, b) == threshold for a in rows for b in rows if a is not b)
    assert on_threshold > 0  # these seeds put some pairs exactly on the threshold
    assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)


def test_nms_threshold_is_strict() -> None:
    boxes = torch.tensor([[0.0, 0, 4, 1], [1, 0, 4, 1]])  # IoU exactly 3/4
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.75).tolist() == [0, 1]
    assert nms(boxes, scores, 0.74).tolist() == [0]


def test_nms_edge_cases() -> None:
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    same = torch.tensor([[1.0, 2, 5, 6]]).repeat(7, 1)
    assert nms(same, torch.full((7,), 0.5), 0.5).tolist() == [0]  # ties: first index
    assert nms(same, torch.arange(7.0) % 3, 0.99).tolist() == [2]  # the first best score
    apart = torch.tensor([[0.0, 0, 1, 1], [2, 0, 3, 1], [4, 0, 5, 1], [6, 0, 7, 1]])
    assert nms(apart, torch.tensor([0.5, 0.9, 0.5, 0.9]), 0.5).tolist() == [1, 3, 0, 2]
    with pytest.raises(ShapeMismatchError, match=r"scores of shape \(4,\).*received \(3,\)"):
        nms(apart, torch.zeros(3), 0.5)


def reference_batched(boxes: Tensor, scores: Tensor, idxs: Tensor, threshold: float) -> list[int]:
    kept: list[int] = []
    for c in idxs.unique().tolist():
        members = torch.where(idxs == c)[0]
        kept += members[reference_nms(boxes[members], scores[members], threshold)].tolist()
    s = scores.tolist()
    return sorted(kept, key=lambda i: (-s[i], i))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shift", [0.0, -70.0])  # negative coordinates defeat "max + 1" offsets
def test_batched_nms_matches_per_class_reference(seed: int, shift: float) -> None:
    boxes, scores = random_boxes(90, seed) + shift, tied_scores(90, seed)
    idxs = torch.randint(0, 4, (90,), generator=torch.Generator().manual_seed(seed))
    expected = reference_batched(boxes, scores, idxs, 0.5)
    assert len(reference_nms(boxes, scores, 0.5)) < len(expected)  # classes matter here
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == expected


def test_batched_nms_edge_cases() -> None:
    same = torch.tensor([[1.0, 2, 5, 6]]).repeat(3, 1)
    assert batched_nms(same, torch.ones(3), torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)


class NMS(nn.Module):
    def forward(self, boxes: Tensor, scores: Tensor) -> Tensor:
        return nms(boxes, scores, 0.5)


def test_nms_exports_with_torch_export() -> None:
    # static shapes: the suppression loop is unrolled for N = 8
    boxes, scores = random_boxes(8, 0, torch.float32, extent=15), tied_scores(8, 0)
    program = torch.export.export(NMS(), (boxes, scores))
    exported = program.module()
    assert exported(boxes, scores).tolist() == nms(boxes, scores, 0.5).tolist()
    for seed in (1, 2, 3):  # nothing data-dependent was baked in at trace time
        b, s = random_boxes(8, seed, torch.float32, extent=15), tied_scores(8, seed)
        assert exported(b, s).tolist() == reference_nms(b.double(), s, 0.5)


# ---------------------------------------------------------------- check_boxes


def test_check_boxes_accepts_valid_and_degenerate() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 8], [3, 3, 3, 5]])  # a zero-width box is allowed
    check_boxes(boxes, image_size=(8, 10))
    check_boxes(torch.zeros(0, 4))


def test_check_boxes_refuses_wrong_shape() -> None:
    with pytest.raises(
        ShapeMismatchError, match=r"Expected boxes of shape \(N, 4\), received \(3, 5\)"
    ):
        check_boxes(torch.zeros(3, 5))


def test_check_boxes_refuses_inverted() -> None:
    boxes = torch.tensor([[0.0, 0, 1, 1], [5, 1, 3, 4], [0, 2, 1, 1]])
    with pytest.raises(DataFormatError) as info:
        check_boxes(boxes, what="boxes of image 17")
    message = str(info.value)
    assert "x1 <= x2 and y1 <= y2" in message
    assert "boxes of image 17 row 1 = [5, 1, 3, 4] (and 1 more rows)" in message


def test_check_boxes_refuses_nan() -> None:
    boxes = torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [math.nan, 1, 2, 3]])
    with pytest.raises(
        DataFormatError, match=r"finite coordinates; received boxes row 2 = \[nan, 1, 2, 3\]$"
    ):
        check_boxes(boxes)


def test_check_boxes_refuses_outside_image() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 8], [2, 1, 10.5, 4]])
    check_boxes(boxes[:1], image_size=(8, 10))
    with pytest.raises(DataFormatError) as info:
        check_boxes(boxes, image_size=(8, 10))
    message = str(info.value)
    assert "0 <= x <= 10 and 0 <= y <= 8" in message
    assert "row 1 = [2, 1, 10.5, 4]" in message


@pytest.mark.parametrize("max_kept", [1, 3, 10])
def test_nms_max_kept_is_the_prefix_of_the_full_result(max_kept: int) -> None:
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 20], 1)
    scores = torch.rand(60, generator=g)
    full = nms(boxes, scores, 0.4)
    assert len(full) > 10
    assert torch.equal(nms(boxes, scores, 0.4, max_kept=max_kept), full[:max_kept])
    labels = torch.randint(0, 3, (60,), generator=g)
    full = batched_nms(boxes, scores, labels, 0.4)
    assert torch.equal(batched_nms(boxes, scores, labels, 0.4, max_kept), full[:max_kept])
