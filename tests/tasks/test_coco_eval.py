"""COCO box metrics against pycocotools' COCOeval on random, awkward detection sets."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError
from cnnlab.tasks.coco_eval import (
    STAT_NAMES,
    TENSOR_NAMES,
    CocoScorer,
    DetectionMetrics,
    evaluate_coco,
    evaluate_coco_files,
    format_table,
    score_coco,
)

GT_CATS = (1, 2, 3, 5)  # 5 has gts but never a detection
CATEGORIES = (*GT_CATS, 7, 9)  # 7 has detections only, 9 nothing at all

# ---------------------------------------------------------------- oracle and data


def cocoeval(gt: dict[str, Any], results: list[dict[str, Any]], **params: Any) -> COCOeval:
    """pycocotools' evaluate, accumulate, summarize; prints silenced, inputs left intact."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:  # loadRes([]) raises IndexError; an index with no annotations is what it means
            coco_dt = COCO()
            coco_dt.dataset = {**copy.deepcopy(gt), "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        for name, value in params.items():
            setattr(ev.params, name, value)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _box(rng: np.random.Generator, integer: bool) -> list[float]:
    w = float(np.exp(rng.uniform(np.log(2), np.log(400))))  # small, medium and large
    h = w * float(np.exp(rng.uniform(-0.5, 0.5)))
    x, y = rng.uniform(0, 600), rng.uniform(0, 400)
    box = [x, y, w, h]
    if integer:  # exact IoUs on the thresholds, areas on the range bounds (32 x 32 = 1024)
        box = [float(round(v)) for v in box]
        box[2:] = [32.0, 32.0] if rng.random() < 0.1 else [max(box[2], 1), max(box[3], 1)]
    return box


def _jitter(rng: np.random.Generator, box: list[float], integer: bool) -> list[float]:
    scale = rng.uniform(0.01, 0.25) * max(box[2], box[3])
    x, y, w, h = (np.array(box) + rng.normal(0, scale, 4)).tolist()
    out = [x, y, max(w, 1.0), max(h, 1.0)]
    return [float(round(v)) for v in out] if integer else out


def _random_coco_image(
    rng: np.random.Generator, image_id: int, integer: bool, next_id: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One image's gt annotations (ids from next_id) and results."""
    kind = rng.integers(0, 6)  # 0: no gt, 1: no detections, 2: crowded, else ordinary
    n_gt = 0 if kind == 0 else int(rng.integers(1, 8))
    gts = [(_box(rng, integer), int(rng.choice(GT_CATS))) for _ in range(n_gt)]
    if kind == 2:  # 25 overlapping objects of one class around one spot
        centre = _box(rng, integer)
        gts += [(_jitter(rng, centre, integer), 1) for _ in range(25)]
    anns = []
    for box, cat in gts:
        area = box[2] * box[3] * (rng.uniform(0.4, 1.0) if not integer else 1.0)  # a mask's
        if rng.random() < 0.05:
            area = float(rng.choice([32.0**2, 96.0**2]))  # on a range bound: in both
        crowd = int(rng.random() < 0.12)
        ann = {"image_id": image_id, "category_id": cat, "bbox": box, "area": area}
        anns.append({**ann, "iscrowd": crowd, "id": next_id + len(anns)})
    if kind == 1:
        return anns, []
    # near copies of the gts score higher than random boxes; scores in steps of 0.1 tie
    # within and across images
    dets = [(_jitter(rng, b, integer), c, rng.uniform(0.3, 1)) for b, c in gts for _ in range(3)]
    n_random = 110 if kind == 2 else int(rng.integers(0, 15))
    # > 100 detections of class 1 on a crowded image: COCO keeps the best 100
    cats = [1] * n_random if kind == 2 else rng.choice((1, 2, 3, 7), n_random).tolist()
    dets += [(_box(rng, integer), c, rng.uniform(0, 0.6)) for c in cats]
    results = [
        {"image_id": image_id, "category_id": 7 if cat == 5 else cat, "bbox": box, "score": s}
        for box, cat, s in ((b, c, float(np.round(s, 1))) for b, c, s in dets)
        if rng.random() < 0.7  # some gts get no detection
    ]
    return anns, results


def random_coco(
    seed: int, n_images: int = 50, integer: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A gt and results with every awkward case COCOeval has a rule for."""
    rng = np.random.default_rng(seed)
    image_ids = (rng.permutation(n_images) + 1) * 3  # not in order, not contiguous
    anns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for image_id in image_ids.tolist():
        image_anns, image_results = _random_coco_image(rng, image_id, integer, len(anns) + 1)
        anns += image_anns
        results += image_results
    gt = {
        "images": [{"id": i, "width": 640, "height": 480} for i in image_ids.tolist()],
        "annotations": anns,
        "categories": [{"id": c, "name": f"class{c}"} for c in CATEGORIES],
    }
    return gt, results


def coco_per_class(ev: COCOeval, t: slice | int = slice(None)) -> dict[int, float]:
    """COCO's AP per class: mean of entries > -1 of precision[t, :, k, area all, 100 dets]."""
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        s = ev.eval["precision"][t, :, k, 0, 2]
        out[int(cat)] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
    return out


# ---------------------------------------------------------------- COCO dicts


@pytest.mark.parametrize(
    ("seed", "integer"), [(0, False), (1, False), (2, False), (3, True), (4, True)]
)
def test_stats_equal_cocoeval(seed: int, integer: bool) -> None:
    gt, results = random_coco(seed, integer=integer)
    ev = cocoeval(gt, results)
    ours = evaluate_coco(gt, results)
    np.testing.assert_allclose([ours[k] for k in STAT_NAMES], ev.stats, rtol=0, atol=1e-6)
    assert all(0.05 < ours[k] < 0.95 for k in STAT_NAMES)  # the data exercise every number
    per_class = {c: v["AP"] for c, v in ours["per_class"].items()}
    assert per_class == pytest.approx(coco_per_class(ev), abs=1e-6)
    assert per_class[7] == per_class[9] == -1  # no gt
    assert per_class[5] == 0  # gt, no detections
    ap50 = {c: v["AP50"] for c, v in ours["per_class"].items()}
    assert ap50 == pytest.approx(coco_per_class(ev, 0), abs=1e-6)
    for k, cat in enumerate(ev.params.catIds):
        np.testing.assert_allclose(ours["pr_curves"][cat], ev.eval["precision"][0, :, k, 0, 2])
    np.testing.assert_array_equal(ours["recall_thresholds"], ev.params.recThrs)


def test_arrays_equal_cocoeval_with_custom_parameters() -> None:
    gt, results = random_coco(5, n_images=30)
    ious, recs, dets = [0.3, 0.5, 0.75, 0.9], np.linspace(0, 1, 11), [1, 5, 20]
    areas = {"all": (0.0, 1e10), "tiny": (0.0, 16.0**2), "rest": (16.0**2, 1e10)}
    ev = cocoeval(
        gt,
        results,
        iouThrs=np.array(ious),
        recThrs=recs,
        maxDets=dets,
        areaRng=[list(a) for a in areas.values()],
        areaRngLbl=list(areas),
    )
    scorer = CocoScorer(ious, recs, dets, areas)
    ours = score_coco(gt, results, scorer)
    np.testing.assert_allclose(ours.precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.recall, ev.eval["recall"], rtol=0, atol=1e-12)
    assert (ours.precision == -1).any() and (ours.precision > 0).any()


def test_format_table_matches_cocoeval_summarize() -> None:
    gt, results = random_coco(6, n_images=20)
    ev = cocoeval(gt, results)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ev.summarize()
    stats = evaluate_coco(gt, results)
    assert format_table(stats) == printed.getvalue().rstrip("\n")
    lower = {TENSOR_NAMES[k]: v for k, v in stats.items() if k in TENSOR_NAMES}
    assert format_table(lower) == format_table(stats)


def test_gt_id_zero_reads_as_unmatched_like_cocoeval() -> None:
    gt, results = random_coco(7, n_images=10)
    gt["annotations"][0]["id"] = 0  # COCOeval's dtMatches uses 0 for "no match"
    ann = gt["annotations"][0]
    results.append({**{k: ann[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0})
    ev = cocoeval(gt, results)
    np.testing.assert_allclose(
        [evaluate_coco(gt, results)[k] for k in STAT_NAMES], ev.stats, atol=1e-6
    )


def test_empty_results_are_cocoeval_on_no_detections() -> None:
    gt, _ = random_coco(8, n_images=10)
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(IndexError):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        coco.loadRes([])  # why the oracle builds its own empty index
    ours = evaluate_coco(gt, [])
    assert [ours[k] for k in STAT_NAMES] == pytest.approx(list(cocoeval(gt, []).stats), abs=1e-12)
    assert {ours[k] for k in STAT_NAMES} <= {0.0, -1.0} and ours["AP"] == 0.0


def test_hand_computed_ap() -> None:
    """One gt [0, 0, 10, 10]; a detection [0, 0, 10, 6.5] has IoU 0.65, so it is a match at
    the 4 thresholds 0.50 ... 0.65 of 10: AP = AR = 0.4. A second gt unmatched halves AR.
    """
    gt = {
        "images": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}],
        "categories": [{"id": 1, "name": "a"}],
    }
    results = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 6.5], "score": 0.9}]
    ours = evaluate_coco(gt, results)
    assert ours["AP"] == pytest.approx(0.4) and ours["AR100"] == pytest.approx(0.4)
    assert ours["AP50"] == pytest.approx(1.0) and ours["AP75"] == 0.0
    assert ours["APs"] == pytest.approx(0.4) and ours["APm"] == ours["APl"] == -1
    results[0]["bbox"] = [0, 0, 10, 5]  # IoU exactly 0.5: a match at 0.50 (>=), at no other
    assert evaluate_coco(gt, results)["AP50"] == pytest.approx(1.0)
    assert evaluate_coco(gt, results)["AP"] == pytest.approx(0.1)
    gt["annotations"].append({"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 5, 5]})
    assert evaluate_coco(gt, results)["AR100"] == pytest.approx(0.05)


# ---------------------------------------------------------------- files and errors


def _write(tmp_path: Path, name: str, obj: Any) -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_files_equal_dicts(tmp_path: Path) -> None:
    gt, results = random_coco(9, n_images=10)
    got = evaluate_coco_files(_write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", results))
    assert {k: got[k] for k in STAT_NAMES} == {k: evaluate_coco(gt, results)[k] for k in STAT_NAMES}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("image_id", 999, "result 3: image_id 999 is not in"),
        ("category_id", 4, "result 3: category_id 4 is not in"),
        (
            "bbox",
            [1.0, 2.0, 3.0],
            "result 3: expected bbox [x, y, width, height], received [1.0, 2.",
        ),
        ("score", "high", "result 3: expected score a number, received 'high'"),
    ],
)
def test_bad_result_names_file_and_entry(
    tmp_path: Path, field: str, value: Any, expected: str
) -> None:
    gt, results = random_coco(10, n_images=5)
    results[3][field] = value
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", results)
    with pytest.raises(DataFormatError) as info:
        evaluate_coco_files(gt_path, dt_path)
    assert str(info.value).startswith(f"{dt_path}: {expected}")
    if field.endswith("_id"):
        assert str(gt_path) in str(info.value)


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    gt, results = random_coco(11, n_images=5)
    gt_path = _write(tmp_path, "gt.json", gt)
    dt_path = _write(tmp_path, "dt.json", json.dumps(results)[:-5])
    with pytest.raises(DataFormatError, match=f"^{dt_path}: expected JSON"):
        evaluate_coco_files(gt_path, dt_path)
    with pytest.raises(DataFormatError, match=f"^{dt_path}: expected a list of results"):
        evaluate_coco_files(gt_path, _write(tmp_path, "dt.json", {"annotations": results}))
    gt["annotations"][2]["bbox"] = [0, 0, 4, 4, 4]
    with pytest.raises(DataFormatError, match=r"gt.json: annotations\[2\]: expected bbox"):
        evaluate_coco_files(_write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", results))
    with pytest.raises(DataFormatError, match=r"gt.json: expected an object with lists \('images'"):
        evaluate_coco_files(_write(tmp_path, "gt.json", {"images": []}), dt_path)


# ---------------------------------------------------------------- tensors


def _random_tensor_image(rng: np.random.Generator) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One image's prediction and target as a detector gives them: float32 xyxy boxes."""
    m = int(rng.integers(0, 12))
    xy = rng.uniform(0, 500, (m, 2))
    gt = np.concatenate([xy, xy + np.exp(rng.uniform(np.log(2), np.log(300), (m, 2)))], 1)
    gt_labels = rng.integers(0, 4, m)
    copies = rng.integers(0, m, int(rng.integers(0, 3 * m + 1))) if m else np.zeros(0, int)
    size = np.tile(gt[copies, 2:] - gt[copies, :2], 2)  # (w, h, w, h)
    near = gt[copies] + rng.normal(0, 0.1, (len(copies), 4)) * size
    n_far = int(rng.integers(0, 10))
    far = np.sort(rng.uniform(0, 600, (n_far, 2, 2)), 1).reshape(n_far, 4)  # x1 < x2, y1 < y2
    scores = np.concatenate([rng.uniform(0.3, 1, len(near)), rng.uniform(0, 0.6, n_far)])
    pred = {
        "boxes": torch.tensor(np.concatenate([near, far]), dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(np.round(scores, 1), dtype=torch.float32),  # ties
        "labels": torch.tensor(np.concatenate([gt_labels[copies], rng.integers(0, 5, n_far)])),
    }
    return pred, {"boxes": torch.tensor(gt, dtype=torch.float32), "labels": torch.tensor(gt_labels)}


def random_batches(seed: int, n_images: int = 40) -> list[tuple[list[dict], list[dict]]]:
    """Batches of up to 4 images."""
    rng = np.random.default_rng(seed)
    pairs = [_random_tensor_image(rng) for _ in range(n_images)]
    return [
        ([p for p, _ in pairs[i : i + 4]], [t for _, t in pairs[i : i + 4]])
        for i in range(0, n_images, 4)
    ]


def as_coco(batches: list[tuple[list[dict], list[dict]]]) -> tuple[dict, list[dict]]:
    """The tensors as COCO dicts: images 1, 2, ...; gt area = box area; no crowds."""
    images, anns, results, labels = [], [], [], set()

    def xywh(box: torch.Tensor) -> list[float]:
        x1, y1, x2, y2 = box.tolist()
        return [x1, y1, x2 - x1, y2 - y1]

    pairs = [pair for preds, targets in batches for pair in zip(preds, targets, strict=True)]
    for image_id, (pred, target) in enumerate(pairs, start=1):
        images.append({"id": image_id})
        for box, label in zip(target["boxes"], target["labels"].tolist(), strict=True):
            b = xywh(box)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": 0,
                }
            )
            labels.add(label)
        for box, score, label in zip(
            pred["boxes"], pred["scores"].tolist(), pred["labels"].tolist(), strict=True
        ):
            results.append(
                {"image_id": image_id, "category_id": label, "bbox": xywh(box), "score": score}
            )
            labels.add(label)
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c} for c in labels],
    }, results


@pytest.mark.parametrize("seed", [0, 1])
def test_detection_metrics_equal_cocoeval(seed: int) -> None:
    batches = random_batches(seed)
    metrics = DetectionMetrics()
    for preds, targets in batches:
        metrics.update(preds, targets)
    got = metrics.compute()
    assert list(got) == [TENSOR_NAMES[k] for k in STAT_NAMES]
    np.testing.assert_allclose(
        list(got.values()), cocoeval(*as_coco(batches)).stats, rtol=0, atol=1e-6
    )
    assert got["map"] > 0.05
    metrics.reset()
    assert set(metrics.compute().values()) == {-1.0}


def test_detection_metrics_rejects_bad_shapes() -> None:
    metrics = DetectionMetrics()
    box = torch.tensor([[0.0, 0.0, 5.0, 5.0]])
    pred = {"boxes": box, "scores": torch.tensor([0.5, 0.4]), "labels": torch.tensor([1])}
    target = {"boxes": box, "labels": torch.tensor([1])}
    with pytest.raises(
        ShapeMismatchError, match=r"preds\[0\]: expected 1 scores for 1 boxes, received 2"
    ):
        metrics.update([pred], [target])
    with pytest.raises(ShapeMismatchError, match=r"targets\[0\]: expected boxes of shape \(n, 4\)"):
        metrics.update([{**pred, "scores": torch.tensor([0.5])}], [{**target, "boxes": box[:, :3]}])
    with pytest.raises(ShapeMismatchError, match="one target per prediction"):
        metrics.update([pred], [])
    empty = {"boxes": torch.zeros(0), "scores": torch.zeros(0), "labels": torch.zeros(0)}
    metrics.update([empty], [target])  # an image without detections
    assert metrics.compute()["map"] == 0.0


def test_scorer_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="max_dets"):
        CocoScorer(max_dets=(1, 10))
    with pytest.raises(ConfigError, match="iou_thresholds"):
        CocoScorer(iou_thresholds=[0.5, 1.5])
    with pytest.raises(ConfigError, match="'all'"):
        CocoScorer(area_ranges={"small": (0.0, 1024.0)})
