"""COCO detection JSON: read into ``ImageBoxes`` and write back.

COCO ``bbox`` [x, y, w, h] is in the box frame of ``ImageBoxes``: x0 = x, x1 = x + w.
Category ids may be any integers; labels 0..K-1 follow ascending id. ``read_coco`` returns
``Categories`` (names plus ids), which ``write_coco`` uses to write the original ids back;
plain names are written as ids 1..K (COCO's own numbering starts at 1). ``iscrowd`` boxes
are kept and flagged in ``ImageBoxes.crowd``; COCO has no "difficult", so those are written
as ordinary boxes. Segmentations are not read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.core.errors import DataFormatError
from cnnlab.core.io import write_json
from cnnlab.data.annotations.common import (
    Builder,
    Categories,
    ImageBoxes,
    PathLike,
    check_labels,
    positive_size,
    round_coord,
    warn_dropped,
)


def _get(entry: Any, key: str, kind: type, source: PathLike, where: str) -> Any:
    """``entry[key]`` if entry is a dict and the value has the given type (bool is no int)."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataFormatError(
            f"{source}: {where}: {key!r} is {value!r}; expected {kind.__name__} (COCO layout)"
        )
    return value


def read_coco(path: PathLike) -> tuple[list[ImageBoxes], Categories]:
    """Read a COCO detection JSON (``images``, ``annotations``, ``categories``).

    Returns:
        One record per entry of ``images`` (file order), and the categories sorted by id.

    Raises:
        DataFormatError: malformed JSON, a missing or mistyped field, an annotation whose
            ``image_id`` or ``category_id`` is not listed, or an invalid box.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path}: malformed JSON ({error}); expected a COCO file") from None
    for key in ("images", "annotations", "categories"):
        _get(doc, key, list, path, "top level")
    categories = _coco_categories(doc["categories"], path)
    label_of = {cid: i for i, cid in enumerate(categories.ids)}
    builders = _coco_images(doc["images"], path)
    for i, ann in enumerate(doc["annotations"]):
        where = f"annotations[{i}] (id {ann.get('id') if isinstance(ann, dict) else None})"
        image_id = _get(ann, "image_id", int, path, where)
        category_id = _get(ann, "category_id", int, path, where)
        bbox = _get(ann, "bbox", list, path, where)
        if len(bbox) != 4 or not all(isinstance(v, int | float) for v in bbox):
            raise DataFormatError(f"{path}: {where}: bbox {bbox}; expected [x, y, w, h] numbers")
        if image_id not in builders:
            raise DataFormatError(
                f"{path}: {where}: image_id {image_id} is not in 'images'; "
                f"expected the id of one of its {len(builders)} entries"
            )
        if category_id not in label_of:
            raise DataFormatError(
                f"{path}: {where}: category_id {category_id} is not in 'categories'; "
                f"expected one of {sorted(label_of)}"
            )
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise DataFormatError(f"{path}: {where}: iscrowd is {crowd!r}; expected 0 or 1")
        x, y, w, h = (float(v) for v in bbox)
        entry = f"{where} bbox {bbox}"
        builders[image_id].add([x, y, x + w, y + h], label_of[category_id], entry, bool(crowd))
    records = [b.build() for b in builders.values()]
    warn_dropped(records, path)
    return records, categories


def _coco_categories(entries: list[Any], path: Path) -> Categories:
    by_id: dict[int, str] = {}
    for i, cat in enumerate(entries):
        cid = _get(cat, "id", int, path, f"categories[{i}]")
        if cid in by_id:
            raise DataFormatError(
                f"{path}: categories[{i}]: id {cid} repeated; expected unique ids"
            )
        by_id[cid] = _get(cat, "name", str, path, f"categories[{i}]")
    ids = sorted(by_id)
    return Categories(tuple(by_id[c] for c in ids), tuple(ids))


def _coco_images(entries: list[Any], path: Path) -> dict[int, Builder]:
    builders: dict[int, Builder] = {}
    for i, image in enumerate(entries):
        where = f"images[{i}]"
        image_id = _get(image, "id", int, path, where)
        if image_id in builders:
            raise DataFormatError(f"{path}: {where}: id {image_id} repeated; expected unique ids")
        file = _get(image, "file_name", str, path, where)
        width, height = (_get(image, k, int, path, where) for k in ("width", "height"))
        width, height = positive_size(width, height, path, where)
        builders[image_id] = Builder(file, width, height, str(path), image_id)
    return builders


def write_coco(path: PathLike, images: Sequence[ImageBoxes], class_names: Sequence[str]) -> None:
    """Write records as a COCO detection JSON, atomically.

    Image ids are the records' ``image_id`` when all are set and unique, else 1..N.
    Category ids come from ``class_names.ids`` when it is ``Categories``, else 1..K.
    """
    check_labels(images, class_names)
    cat_ids = list(class_names.ids) if isinstance(class_names, Categories) else None
    cat_ids = cat_ids or list(range(1, len(class_names) + 1))
    image_ids = [r.image_id for r in images]
    if None in image_ids or len(set(image_ids)) != len(image_ids):
        image_ids = list(range(1, len(images) + 1))
    doc: dict[str, list[dict[str, Any]]] = {"images": [], "annotations": [], "categories": []}
    for image_id, image in zip(image_ids, images, strict=True):
        doc["images"].append(
            {"id": image_id, "file_name": image.file, "width": image.width, "height": image.height}
        )
        for box, label, crowd in zip(image.boxes, image.labels, image.crowd, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            doc["annotations"].append(
                {
                    "id": len(doc["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cat_ids[label],
                    "iscrowd": int(crowd),
                    "segmentation": [],
                    "bbox": [
                        round_coord(x0),
                        round_coord(y0),
                        round_coord(x1 - x0),
                        round_coord(y1 - y0),
                    ],
                    "area": round_coord((x1 - x0) * (y1 - y0)),
                }
            )
    doc["categories"] = [{"id": c, "name": n} for c, n in zip(cat_ids, class_names, strict=True)]
    write_json(path, doc)
