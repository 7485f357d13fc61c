"""The detect task and its detectors: priors, assignment, coding, TTA, losses, bad boxes."""

from __future__ import annotations

import pytest
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.models import create_model, list_models
from cnnlab.models.detector import PriorSpec
from cnnlab.tasks import get_task
from cnnlab.tasks.boxes import box_convert, box_iou
from cnnlab.tasks.detect import check_box_targets, pad_detections, unpad
from cnnlab.tasks.detect_rules import (
    DecodeSettings,
    FcosRule,
    SsdRule,
    decode,
    encode,
    select,
)

SIZE = (32, 32)


def bound(name: str, **kwargs: object) -> tuple[torch.nn.Module, object]:
    model = create_model(name, num_classes=3, **kwargs)
    task = get_task("detect", image_size=list(SIZE))
    task.bind(model)
    return model, task


def test_detectors_are_registered_for_the_task() -> None:
    assert {"fcos", "ssd", "fcos_resnet50_fpn"} <= set(list_models(task="detect"))


def test_fcos_resnet50_fpn_has_torchvisions_published_parameter_count() -> None:
    # torchvision's fcos_resnet50_fpn (91 classes): 32,269,600 parameters. Its backbone's
    # BatchNorms are frozen (buffers, not parameters) and it has no per-level Scale.
    model = create_model("fcos_resnet50_fpn", num_classes=91)
    total = sum(p.numel() for p in model.parameters())
    batchnorm = sum(
        p.numel()
        for m in model.features.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for p in m.parameters()
    )
    scales = len(model.spec.strides)
    assert model.spec.strides == (8, 16, 32, 64, 128)
    assert total - batchnorm - scales == 32_269_600


@pytest.mark.parametrize("name", ["fcos", "ssd"])
def test_outputs_match_the_priors(name: str) -> None:
    model, task = bound(name)
    out = model(torch.zeros(2, 1, *SIZE))
    assert out.shape == (2, len(task.priors()), 5 + 3)


@pytest.mark.parametrize(
    "spec",
    [PriorSpec("fcos", (4, 8, 16)), PriorSpec("ssd", (4, 8), (12.0, 24.0), (1.0, 2.0, 0.5))],
)
def test_mirror_index_maps_each_prior_onto_its_mirror(spec: PriorSpec) -> None:
    priors = spec.priors((16, 32))
    mirrored = priors[spec.mirror((16, 32))]
    assert torch.allclose(mirrored[:, 0], 32 - priors[:, 0])
    assert torch.equal(mirrored[:, 1:], priors[:, 1:])
    assert sorted(spec.mirror((16, 32)).tolist()) == list(range(len(priors)))


def test_fcos_priors_are_cell_centres_level_by_level() -> None:
    priors = PriorSpec("fcos", (4, 8)).priors((8, 16))
    assert len(priors) == 2 * 4 + 1 * 2
    assert priors[:3].tolist() == [[2, 2, 4, 4], [6, 2, 4, 4], [10, 2, 4, 4]]
    assert priors[8].tolist() == [4, 4, 8, 8]


@pytest.mark.parametrize("rule", [FcosRule(), SsdRule()])
def test_tta_mirror_maps_flipped_outputs_back_to_flipped_boxes(rule: object) -> None:
    """Boxes decoded from the mirrored image's outputs, read back through mirror(), are
    those boxes flipped: x -> W - x."""
    kind = "fcos" if isinstance(rule, FcosRule) else "ssd"
    spec = PriorSpec(kind, (4, 8), (8.0, 16.0), (1.0, 2.0) if kind == "ssd" else ())
    W = SIZE[1]
    priors = spec.priors(SIZE)
    g = torch.Generator().manual_seed(0)
    out = torch.randn(1, len(priors), 5 + 2, generator=g)
    if kind == "fcos":
        out[..., :4] = out[..., :4].exp() * 3
    boxes_flipped, _ = rule.decode(out, priors)  # in the flipped image's frame
    back, _ = rule.decode(rule.mirror(out[:, spec.mirror(SIZE)]), priors)
    expected = boxes_flipped[:, spec.mirror(SIZE)][..., [2, 1, 0, 3]] * torch.tensor(
        [-1.0, 1, -1, 1]
    ) + torch.tensor([W, 0.0, W, 0])
    assert torch.allclose(back, expected, atol=1e-4)


def test_fcos_assignment_follows_inside_centre_range_and_smallest_area() -> None:
    priors = PriorSpec("fcos", (4, 8)).priors(SIZE)
    boxes = torch.tensor([[[2.0, 2.0, 14.0, 14.0], [0.0, 0.0, 30.0, 30.0]]])
    classes = torch.tensor([[0, 1]])
    index, distances = FcosRule(radius=1.5, range_factor=2.0).assign(priors, boxes, classes)
    cx, cy, stride = priors[:, 0], priors[:, 1], priors[:, 2]
    for i in range(len(priors)):
        got = int(index[0, i])
        if got < 0:
            continue
        box = boxes[0, got]
        assert box[0] < cx[i] < box[2] and box[1] < cy[i] < box[3]
        centre = (box[:2] + box[2:]) / 2
        assert abs(cx[i] - centre[0]) < 1.5 * stride[i] and abs(cy[i] - centre[1]) < 1.5 * stride[i]
        largest = float(distances[0, i].max())
        low = 0.0 if stride[i] == 4 else 2.0 * 4  # range_factor x the finer stride's
        high = 2.0 * 4 if stride[i] == 4 else float("inf")
        assert low < largest <= high
    # The small box has cells at the fine level; the large one only at the coarse one.
    assert 4.0 in set(stride[index[0] == 0].tolist())
    assert set(stride[index[0] == 1].tolist()) == {8.0}
    # A padding row (class -1) is never assigned.
    index, _ = FcosRule().assign(priors, boxes, torch.tensor([[0, -1]]))
    assert 1 not in index.tolist()[0]


def test_ssd_encode_decode_round_trip() -> None:
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(50, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 30], 1)
    priors = torch.cat(
        [torch.rand(50, 2, generator=g) * 40, 4 + torch.rand(50, 2, generator=g) * 20], 1
    )
    assert torch.allclose(decode(encode(boxes, priors), priors), boxes, atol=1e-4)


def test_ssd_matching_claims_every_boxs_best_prior() -> None:
    spec = PriorSpec("ssd", (4, 8), (8.0, 16.0), (1.0, 2.0, 0.5))
    priors = spec.priors(SIZE)
    boxes = torch.tensor([[[3.0, 3.0, 9.0, 12.0], [10.0, 10.0, 29.0, 27.0], [0.0, 0, 0, 0]]])
    classes = torch.tensor([[0, 2, -1]])
    index = SsdRule().match(priors, boxes, classes)
    iou = box_iou(box_convert(priors, "cxcywh", "xyxy"), boxes[0, :2])
    for m in range(2):
        assert index[0, int(iou[:, m].argmax())] == m
    positive = index[0] >= 0
    chosen = iou[positive, index[0, positive]]
    best = {int(iou[:, m].argmax()) for m in range(2)}
    others = [p for p in positive.nonzero().flatten().tolist() if p not in best]
    assert all(float(iou[p, index[0, p]]) >= 0.5 for p in others)
    assert len(chosen) >= 2
    assert 2 not in index.tolist()[0]


def test_focal_loss_and_giou_drive_fcos_to_fit_a_batch() -> None:
    torch.manual_seed(0)
    model, task = bound("fcos", backbone_args={"widths": [16, 32, 32, 32], "blocks": [1, 1, 1, 1]})
    x = torch.rand(4, 1, *SIZE)
    targets = {
        "boxes": torch.tensor([[[4.0, 4.0, 20.0, 22.0]]] * 4),
        "classes": torch.tensor([[1]] * 4),
    }
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        losses = task.loss(model(x), targets)
        first = first if first is not None else {k: float(v) for k, v in losses.items()}
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    last = {k: float(v) for k, v in task.loss(model(x), targets).items()}
    assert last["loss"] < 0.5 * first["loss"]
    assert last["box"] < first["box"]
    found = task.detections(model(x).detach())
    assert int(found[0][2][0]) == 1  # the best detection is the right class


def test_ssd_loss_falls_on_a_batch() -> None:
    torch.manual_seed(0)
    model, task = bound("ssd", backbone_args={"widths": [16, 32, 32, 32], "blocks": [1, 1, 1, 1]})
    x = torch.rand(4, 1, *SIZE)
    targets = {
        "boxes": torch.tensor([[[4.0, 4.0, 20.0, 22.0]]] * 4),
        "classes": torch.tensor([[2]] * 4),
    }
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(task.loss(model(x), targets)["loss"])
    for _ in range(30):
        loss = task.loss(model(x), targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(task.loss(model(x), targets)["loss"]) < 0.5 * first


def test_select_thresholds_clips_and_caps() -> None:
    boxes = torch.tensor([[-5.0, 2, 10, 12], [0, 2, 10, 12], [20, 20, 40, 30], [1, 1, 3, 3]])
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.7], [0.0, 0.6], [0.01, 0.02]])
    b, s, lab = select(boxes, scores, (16, 32), DecodeSettings(0.05, 1000, 0.5, 3))
    # (0.9, class 0) suppresses (0.8, class 0) once clipped; class 1 keeps its own box.
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert lab.tolist() == [0, 1, 1]
    assert b[0].tolist() == [0.0, 2, 10, 12]
    assert b[2].tolist() == [20.0, 16, 32, 16]
    b, s, lab = select(boxes, scores, (16, 32), DecodeSettings(0.05, 1000, 0.5, 1))
    assert len(b) == 1


def test_pad_and_unpad() -> None:
    found = [
        (torch.ones(2, 4), torch.tensor([0.9, 0.5]), torch.tensor([1, 0])),
        (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)),
    ]
    padded = pad_detections(found)
    assert padded.shape == (2, 2, 6)
    assert padded[1, :, 5].tolist() == [-1, -1]
    rows = unpad(
        {"boxes": torch.ones(2, 3, 4), "classes": torch.tensor([[0, -1, -1], [-1, -1, -1]])}
    )
    assert [len(r["boxes"]) for r in rows] == [1, 0]


@pytest.mark.parametrize(
    ("box", "cls", "message"),
    [
        ([5.0, 5.0, 2.0, 9.0], 0, "x2 <= x1"),
        ([float("nan"), 1.0, 4.0, 4.0], 0, "NaN"),
        ([1.0, 1.0, 40.0, 4.0], 0, "outside the 32x32 image"),
        ([1.0, 1.0, 4.0, 4.0], 7, "class id outside"),
        ([3.0, 3.0, 3.0, 9.0], 0, "x2 <= x1"),
    ],
)
def test_bad_boxes_are_refused_naming_the_image_and_row(
    box: list[float], cls: int, message: str
) -> None:
    boxes = torch.tensor([[[1.0, 1.0, 5.0, 5.0], box]])
    classes = torch.tensor([[0, cls]])
    with pytest.raises(ConfigError, match=message) as caught:
        check_box_targets(boxes, classes, 3, SIZE, "dataset 'x' (train)")
    assert "image 0 row 1" in str(caught.value) and "dataset 'x'" in str(caught.value)


def test_a_classifier_cannot_be_trained_for_detection() -> None:
    with pytest.raises(ConfigError, match="needs a detector"):
        get_task("detect").bind(create_model("resnet_mini"))


def test_a_saved_task_rebuilds_its_spec_from_the_record() -> None:
    model, task = bound("ssd")
    args = {"image_size": list(SIZE), "spec": model.spec.to_dict()}
    again = get_task("detect", **args)
    assert again.spec == model.spec
    assert torch.equal(again.priors(), task.priors())
