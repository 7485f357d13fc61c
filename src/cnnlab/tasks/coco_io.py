"""COCO ground truth and results as dicts or JSON files, checked and scored by ``CocoScorer``."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.core.errors import DataFormatError
from cnnlab.tasks.coco_eval import CocoResult, CocoScorer, ImageBoxes


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bbox(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))


def _get(entry: Any, key: str, where: str, check: Callable[[Any], bool], expected: str) -> Any:
    """``entry[key]`` if ``check`` accepts it, else a DataFormatError naming ``where``."""
    if not isinstance(entry, Mapping) or key not in entry:
        got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
        raise DataFormatError(f"{where}: expected an object with {key!r}, received {got}")
    if not check(entry[key]):
        raise DataFormatError(f"{where}: expected {key} {expected}, received {entry[key]!r}")
    return entry[key]


def _image_and_category(
    entry: Any, where: str, images: Collection[int], cats: Collection[int], gt_source: str
) -> tuple[int, int]:
    """An annotation's or a result's image and category ids, checked to be the gt's."""
    found = []
    for key, known in (("image_id", images), ("category_id", cats)):
        value = _get(entry, key, where, _is_id, "an integer")
        if value not in known:
            some = ", ".join(map(str, sorted(known)[:8])) + (", ..." if len(known) > 8 else "")
            raise DataFormatError(
                f"{where}: {key} {value} is not in {gt_source}; expected one of its "
                f"{len(known)} ids ({some})"
            )
        found.append(value)
    return found[0], found[1]


def _coco_images(
    gt: Any, results: Any, gt_source: str, results_source: str
) -> tuple[list[ImageBoxes], list[int]]:
    """Validate COCO dicts and group their boxes per image, in ascending image id."""
    keys = ("images", "annotations", "categories")
    if not isinstance(gt, Mapping) or not all(isinstance(gt.get(k), list) for k in keys):
        got = sorted(gt) if isinstance(gt, Mapping) else type(gt).__name__
        raise DataFormatError(f"{gt_source}: expected an object with lists {keys}, received {got}")
    if not isinstance(results, list):
        got = type(results).__name__
        raise DataFormatError(f"{results_source}: expected a list of results, received {got}")
    ids, cats = (
        {
            _get(x, "id", f"{gt_source}: {key}[{i}]", _is_id, "an integer")
            for i, x in enumerate(gt[key])
        }
        for key in ("images", "categories")
    )
    rows: dict[int, tuple[list[list[float]], list[list[float]]]] = {i: ([], []) for i in ids}
    for i, ann in enumerate(gt["annotations"]):
        where = f"{gt_source}: annotations[{i}]"
        image, label = _image_and_category(ann, where, ids, cats, gt_source)
        x, y, w, h = _get(ann, "bbox", where, _is_bbox, "[x, y, width, height]")
        # COCO's area is the mask's, which the area ranges compare; the box's without one
        area = _get(ann, "area", where, _is_number, "a number") if "area" in ann else w * h
        ann_id = _get(ann, "id", where, _is_id, "an integer") if "id" in ann else i + 1
        rows[image][0].append([x, y, w, h, label, area, bool(ann.get("iscrowd", 0)), ann_id])
    for i, res in enumerate(results):
        where = f"{results_source}: result {i}"
        image, label = _image_and_category(res, where, ids, cats, gt_source)
        box = _get(res, "bbox", where, _is_bbox, "[x, y, width, height]")
        rows[image][1].append([*box, label, _get(res, "score", where, _is_number, "a number")])
    return [_image_from_rows(*rows[i]) for i in sorted(ids)], sorted(cats)


def _image_from_rows(gts: list[list[float]], dts: list[list[float]]) -> ImageBoxes:
    g = np.array(gts, dtype=np.float64).reshape(-1, 8)  # x y w h label area crowd id
    d = np.array(dts, dtype=np.float64).reshape(-1, 6)  # x y w h label score
    return ImageBoxes(
        g[:, :4],
        g[:, 4].astype(np.int64),
        g[:, 5],
        g[:, 6] > 0,
        g[:, 7].astype(np.int64),
        d[:, :4],
        d[:, 4].astype(np.int64),
        d[:, 5],
    )


def score_coco(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    scorer: CocoScorer | None = None,
    gt_source: str = "ground truth",
    results_source: str = "results",
) -> CocoResult:
    """Score COCO results against a COCO ground truth, as COCOeval(iouType="bbox").

    Unlike pycocotools, a result whose category is not in the gt raises (COCOeval drops it
    silently) and an empty results list scores 0 (-1 where an area range has no gt), which
    is COCOeval's answer on an empty detection set (its ``loadRes([])`` raises IndexError).
    A gt without ``area`` uses its box's area, one without ``iscrowd`` is not a crowd.

    Args:
        gt: COCO ground truth: images, annotations (bbox, area, iscrowd), categories.
        results: COCO results: image_id, category_id, bbox [x, y, w, h], score.
        scorer: Thresholds and ranges; default COCO's.
        gt_source: How errors name the gt (a file path).
        results_source: How errors name the results.
    """
    images, category_ids = _coco_images(gt, results, gt_source, results_source)
    return (scorer or CocoScorer()).score(images, category_ids)


def evaluate_coco(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    scorer: CocoScorer | None = None,
    gt_source: str = "ground truth",
    results_source: str = "results",
) -> dict[str, Any]:
    """``score_coco`` as a report: ``CocoResult.to_dict`` with the gt's category names."""
    result = score_coco(gt, results, scorer, gt_source, results_source)
    return result.to_dict({c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]})


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(
            f"{path}: expected JSON, received a file that does not parse ({e})"
        ) from e


def evaluate_coco_files(
    gt_path: str | Path, results_path: str | Path, scorer: CocoScorer | None = None
) -> dict[str, Any]:
    """``evaluate_coco`` on a COCO ground-truth JSON file and a results JSON file."""
    gt_path, results_path = Path(gt_path), Path(results_path)
    gt, results = _load_json(gt_path), _load_json(results_path)
    return evaluate_coco(gt, results, scorer, str(gt_path), str(results_path))
