"""Detection annotations: COCO JSON, Pascal VOC XML and YOLO txt, read into one form and back.

Every reader returns ``ImageBoxes`` records and the class names; every writer takes them.
Boxes are float32 (n, 4) x0, y0, x1, y1 pixels, 0-based, x1 and y1 exclusive (the convention
of ``cnnlab.data.scenes``): a box over pixel columns 0..9 has x0 = 0, x1 = 10.

Decisions:
- Coordinates. COCO ``bbox`` [x, y, w, h] is in that frame: x0 = x, x1 = x + w. VOC
  ``<bndbox>`` values are 1-based inclusive pixel indices: x0 = xmin - 1, x1 = xmax (written
  back as xmin = x0 + 1, xmax = x1). YOLO ``class cx cy w h`` is divided by the image size.
- Validation on read. NaN or infinite coordinates, x1 < x0 or y1 < y0, a box more than
  ``EDGE_TOLERANCE`` (1 pixel) outside the image, an unknown class id, category id or class
  name, an annotation naming a missing image, and a malformed file raise DataFormatError
  naming the file, the entry and what was expected. Boxes within the tolerance are clipped
  to the image: 0-based VOC writers (xmin = 0) and outward rounding put edges one pixel out.
- Degenerate boxes (zero width or height, after clipping) are dropped, not errors: they hold
  no pixels, and labelling tools write them for clicks that never became a box. Each record
  counts them in ``dropped``, and each read warns once with the total.
- COCO category ids may be any integers; labels 0..K-1 follow ascending id. ``read_coco``
  returns ``Categories`` (names plus ids), which ``write_coco`` uses to write the original
  ids back; plain names are written as ids 1..K (COCO's own numbering starts at 1).
- COCO ``iscrowd`` boxes are kept and flagged in ``ImageBoxes.crowd`` (evaluation ignores
  them; a trainer may drop them). VOC writes them with ``<difficult>1``, its own "ignore"
  flag. YOLO has no such flag, so its writer skips crowd and difficult boxes, as the
  Ultralytics COCO and VOC converters do; COCO has no "difficult", so those are written as
  ordinary boxes. Segmentations are not read.
- Writing. Each file is written atomically (``cnnlab.core.io``) after every record has been
  checked, so a failure leaves no half-written file (a set of files is not one transaction).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import xml.etree.ElementTree as ET  # local files only; defusedxml is not a dependency
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.core.errors import ConfigError, DataFormatError
from cnnlab.core.io import atomic_write_text, write_json
from cnnlab.data.folder import IMAGE_SUFFIXES

EDGE_TOLERANCE = 1.0  # pixels a box may reach outside its image before it is an error
YOLO_CLASSES_FILE = "classes.txt"  # labelImg's name for the class list beside the labels
FORMATS = ("coco", "voc", "yolo")
PathLike = str | os.PathLike[str]


@dataclass
class ImageBoxes:
    """The boxes of one image, the form every reader returns and every writer takes.

    Attributes:
        file: image path relative to the images folder (COCO ``file_name``, VOC
            ``filename``, the YOLO image's relative path).
        width: image width in pixels, as the annotation states it.
        height: image height in pixels.
        boxes: float32 (n, 4) x0, y0, x1, y1 pixels, x1 and y1 exclusive.
        labels: int64 (n,) index into the class names.
        crowd: bool (n,) COCO ``iscrowd``; all False when not given.
        difficult: bool (n,) VOC ``difficult``; all False when not given.
        image_id: the COCO image id, kept so that a round trip writes it back.
        dropped: zero-area boxes the reader dropped from this image.
        source: the annotation file this record came from, for error messages.
    """

    file: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    crowd: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    image_id: int | None = None
    dropped: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        self.crowd, self.difficult = _flags(self.crowd, n), _flags(self.difficult, n)
        lengths = (len(self.labels), len(self.crowd), len(self.difficult))
        if lengths != (n, n, n):
            raise DataFormatError(
                f"{self.file}: {n} boxes but (labels, crowd, difficult) lengths {lengths}; "
                "expected one of each per box"
            )


def _flags(values: Any, n: int) -> np.ndarray:
    """bool (n,) from per-box flags; none given means all False."""
    flags = np.asarray(values, bool).reshape(-1)
    return flags if len(flags) else np.zeros(n, bool)


@dataclass(frozen=True)
class Categories(Sequence[str]):
    """Class names in label order with their COCO category ids: label i is ``ids[i]``."""

    names: tuple[str, ...]
    ids: tuple[int, ...]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class _Builder:
    """One image's boxes as read, checked and converted to an ``ImageBoxes`` by ``build``."""

    file: str
    width: int
    height: int
    source: str
    image_id: int | None = None
    xyxy: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    crowd: list[bool] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)  # how each box is named in errors

    def add(self, xyxy: list[float], label: int, entry: str, crowd: bool = False) -> None:
        self.xyxy.append(xyxy)
        self.labels.append(label)
        self.crowd.append(crowd)
        self.entries.append(entry)

    def build(self) -> ImageBoxes:
        boxes = np.asarray(self.xyxy, np.float64).reshape(-1, 4)
        keep = _clean_boxes(boxes, self.entries, self.width, self.height, self.source)
        return ImageBoxes(
            self.file,
            self.width,
            self.height,
            boxes=boxes[keep],
            labels=np.asarray(self.labels, np.int64)[keep],
            crowd=np.asarray(self.crowd, bool)[keep],
            difficult=_flags(self.difficult, len(keep))[keep],
            image_id=self.image_id,
            dropped=int((~keep).sum()),
            source=self.source,
        )


def _clean_boxes(
    xyxy: np.ndarray, entries: list[str], width: int, height: int, source: str
) -> np.ndarray:
    """Raise on invalid boxes (n, 4), clip those within tolerance in place; return the keep mask."""

    def refuse(bad: np.ndarray, problem: str, expected: str) -> None:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            box = ", ".join(f"{float(v):g}" for v in xyxy[i])
            raise DataFormatError(
                f"{source}: {entries[i]}: {problem} (x0, y0, x1, y1 = {box}); expected {expected}"
            )

    refuse(~np.isfinite(xyxy).all(1), "NaN or infinite coordinate", "finite numbers")
    inverted = (xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])
    refuse(inverted, "box ends before it starts", "x1 >= x0 and y1 >= y0")
    limit = np.array([width, height]) + EDGE_TOLERANCE
    outside = np.asarray((xyxy[:, :2] < -EDGE_TOLERANCE).any(1) | (xyxy[:, 2:] > limit).any(1))
    refuse(
        outside,
        f"box outside the {width}x{height} image",
        f"0 <= x <= {width} and 0 <= y <= {height} (tolerance {EDGE_TOLERANCE:g} pixel)",
    )
    np.clip(xyxy, 0, [width, height, width, height], out=xyxy)
    return np.asarray((xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1]))


def _warn_dropped(records: list[ImageBoxes], source: PathLike) -> None:
    total = sum(r.dropped for r in records)
    if total:
        files = [r.file for r in records if r.dropped]
        warnings.warn(
            f"{source}: dropped {total} zero-area boxes in {len(files)} images "
            f"(first: {files[0]}); counted in ImageBoxes.dropped",
            stacklevel=3,
        )


def _get(entry: Any, key: str, kind: type, source: PathLike, where: str) -> Any:
    """``entry[key]`` if entry is a dict and the value has the given type (bool is no int)."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataFormatError(
            f"{source}: {where}: {key!r} is {value!r}; expected {kind.__name__} (COCO layout)"
        )
    return value


def _positive_size(width: float, height: float, source: PathLike, where: str) -> tuple[int, int]:
    if not (float(width).is_integer() and float(height).is_integer() and min(width, height) > 0):
        raise DataFormatError(
            f"{source}: {where}: image size {width}x{height}; expected positive integers"
        )
    return int(width), int(height)


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
    _warn_dropped(records, path)
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


def _coco_images(entries: list[Any], path: Path) -> dict[int, _Builder]:
    builders: dict[int, _Builder] = {}
    for i, image in enumerate(entries):
        where = f"images[{i}]"
        image_id = _get(image, "id", int, path, where)
        if image_id in builders:
            raise DataFormatError(f"{path}: {where}: id {image_id} repeated; expected unique ids")
        file = _get(image, "file_name", str, path, where)
        width, height = (_get(image, k, int, path, where) for k in ("width", "height"))
        width, height = _positive_size(width, height, path, where)
        builders[image_id] = _Builder(file, width, height, str(path), image_id)
    return builders


def write_coco(path: PathLike, images: Sequence[ImageBoxes], class_names: Sequence[str]) -> None:
    """Write records as a COCO detection JSON, atomically.

    Image ids are the records' ``image_id`` when all are set and unique, else 1..N.
    Category ids come from ``class_names.ids`` when it is ``Categories``, else 1..K.
    """
    _check_labels(images, class_names)
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
                    "bbox": [_round(x0), _round(y0), _round(x1 - x0), _round(y1 - y0)],
                    "area": _round((x1 - x0) * (y1 - y0)),
                }
            )
    doc["categories"] = [{"id": c, "name": n} for c, n in zip(cat_ids, class_names, strict=True)]
    write_json(path, doc)


def _round(value: float) -> float:
    return round(value, 4)  # float32 holds ~7 digits: 4 decimals keep all of them below 1000 px


def _check_labels(images: Sequence[ImageBoxes], class_names: Sequence[str]) -> None:
    for image in images:
        bad = (image.labels < 0) | (image.labels >= len(class_names))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"{image.file}: box {i} has label {int(image.labels[i])}; "
                f"expected 0..{len(class_names) - 1} (one per class name)"
            )


def _xml_text(node: ET.Element, tag: str, source: Path, where: str) -> str:
    child = node.find(tag)
    if child is None or not (child.text or "").strip():
        raise DataFormatError(f"{source}: {where}: no <{tag}> value; expected one (VOC layout)")
    return (child.text or "").strip()


def _xml_number(node: ET.Element, tag: str, source: Path, where: str) -> float:
    text = _xml_text(node, tag, source, where)
    try:
        return float(text)
    except ValueError:
        raise DataFormatError(
            f"{source}: {where}: <{tag}> is {text!r}; expected a number"
        ) from None


def _parse_voc(path: Path) -> tuple[_Builder, list[str]]:
    """One VOC file as a builder without labels, and the class name of each object."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise DataFormatError(f"{path}: malformed XML ({error}); expected a VOC file") from None
    if root.tag != "annotation":
        raise DataFormatError(f"{path}: root is <{root.tag}>; expected <annotation> (VOC layout)")
    size = root.find("size")
    if size is None:
        raise DataFormatError(f"{path}: annotation: no <size>; expected <size><width><height>")
    width, height = (_xml_number(size, t, path, "size") for t in ("width", "height"))
    width, height = _positive_size(width, height, path, "size")
    builder = _Builder(_xml_text(root, "filename", path, "annotation"), width, height, str(path))
    names = []
    for i, obj in enumerate(root.iter("object")):
        name = _xml_text(obj, "name", path, f"object {i}")
        where = f"object {i} ({name})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DataFormatError(
                f"{path}: {where}: no <bndbox>; expected <xmin><ymin><xmax><ymax>"
            )
        xmin, ymin, xmax, ymax = (
            _xml_number(bndbox, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax")
        )
        difficult = obj.findtext("difficult", "0").strip() or "0"
        if difficult not in ("0", "1"):
            raise DataFormatError(f"{path}: {where}: <difficult> is {difficult!r}; expected 0 or 1")
        entry = f"{where} <bndbox> {xmin:g} {ymin:g} {xmax:g} {ymax:g}"
        builder.add([xmin - 1, ymin - 1, xmax, ymax], -1, entry)  # 1-based inclusive -> 0-based
        builder.difficult.append(difficult == "1")
        names.append(name)
    return builder, names


def read_voc(
    folder_or_files: PathLike | Iterable[PathLike], class_names: Sequence[str] | None = None
) -> tuple[list[ImageBoxes], list[str]]:
    """Read Pascal VOC XML files: every ``*.xml`` in a folder (sorted), or the files given.

    Args:
        folder_or_files: an ``Annotations`` folder, or a list of XML files.
        class_names: the classes in label order; None takes the sorted names found, so
            reading the same files twice gives the same labels.

    Raises:
        DataFormatError: malformed XML, a missing element, a name not in ``class_names``,
            or an invalid box.
    """
    if isinstance(folder_or_files, str | os.PathLike):
        folder = Path(folder_or_files)
        if not folder.is_dir():
            raise DataFormatError(f"{folder}: expected a folder of VOC .xml files")
        files, source = sorted(folder.glob("*.xml")), str(folder)
    else:
        files = [Path(f) for f in folder_or_files]
        source = f"{len(files)} VOC files"
    parsed = [_parse_voc(f) for f in files]
    found = {name for _, names in parsed for name in names}
    names = list(class_names) if class_names is not None else sorted(found)
    label_of = {name: i for i, name in enumerate(names)}
    for builder, object_names in parsed:
        for i, name in enumerate(object_names):
            if name not in label_of:
                raise DataFormatError(
                    f"{builder.source}: object {i}: class name {name!r} is unknown; "
                    f"expected one of {names}"
                )
        builder.labels = [label_of[n] for n in object_names]
    records = [b.build() for b, _ in parsed]
    _warn_dropped(records, source)
    return records, names


def _number(value: float) -> str:
    value = _round(value)
    return str(int(value)) if value.is_integer() else str(value)


def _voc_xml(image: ImageBoxes, class_names: Sequence[str]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = image.file
    size = ET.SubElement(root, "size")
    # depth is not kept in ImageBoxes; 3 (RGB) is what VOC itself always states.
    for tag, value in (("width", image.width), ("height", image.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box, label, crowd, difficult in zip(
        image.boxes, image.labels, image.crowd, image.difficult, strict=True
    ):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[label]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(crowd or difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = (float(v) for v in box)
        for tag, coord in zip(
            ("xmin", "ymin", "xmax", "ymax"), (x0 + 1, y0 + 1, x1, y1), strict=True
        ):
            ET.SubElement(bndbox, tag).text = _number(coord)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _targets(
    images: Sequence[ImageBoxes], name_of: Callable[[Path], str | Path], reserved: str = ""
) -> list[Path]:
    """Relative output paths, one per record; refuses paths outside the folder and clashes."""
    seen: dict[Path, str] = {Path(reserved): "(the class names file)"} if reserved else {}
    out = []
    for image in images:
        target = Path(name_of(Path(image.file)))
        if target.is_absolute() or ".." in target.parts or target in seen:
            clash = f"clashes with {seen[target]}" if target in seen else "leaves the folder"
            raise DataFormatError(
                f"{image.file}: its annotation file {target} {clash}; "
                "expected unique names inside the folder"
            )
        seen[target] = image.file
        out.append(target)
    return out


def write_voc(folder: PathLike, images: Sequence[ImageBoxes], class_names: Sequence[str]) -> None:
    """Write one VOC XML per record, ``folder/<image stem>.xml``, each atomically."""
    _check_labels(images, class_names)
    targets = _targets(images, lambda p: p.stem + ".xml")
    texts = [_voc_xml(image, class_names) for image in images]
    for target, text in zip(targets, texts, strict=True):
        atomic_write_text(Path(folder) / target, text)


def _list_images(images_dir: Path) -> dict[Path, Path]:
    """Images under ``images_dir`` keyed by relative path without suffix."""
    out: dict[Path, Path] = {}
    found = (p for p in images_dir.rglob("*") if not p.name.startswith("."))
    for path in sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES):
        key = path.relative_to(images_dir).with_suffix("")
        if key in out:
            raise DataFormatError(
                f"{path}: same name as {out[key]}; expected one image per label file"
            )
        out[key] = path
    return out


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (UnidentifiedImageError, OSError) as error:
        raise DataFormatError(
            f"{path}: cannot read this image ({error}); expected an image Pillow can open"
        ) from None


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DataFormatError(
            f"{path}: not found; expected class names one per line (or pass class_names)"
        )
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_yolo_file(path: Path | None, builder: _Builder, num_classes: int) -> ImageBoxes:
    w, h = builder.width, builder.height
    lines = path.read_text(encoding="utf-8").splitlines() if path is not None else []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        entry = f"line {n} ({line.strip()!r})"
        if len(fields) != 5:
            raise DataFormatError(
                f"{path}: {entry}: {len(fields)} fields; expected 5: class cx cy w h"
            )
        try:
            label, (cx, cy, bw, bh) = int(fields[0]), (float(v) for v in fields[1:])
        except ValueError:
            raise DataFormatError(
                f"{path}: {entry}: expected an integer class and 4 numbers"
            ) from None
        if not 0 <= label < num_classes:
            raise DataFormatError(
                f"{path}: {entry}: class {label} out of range; "
                f"expected 0..{num_classes - 1} ({num_classes} class names)"
            )
        builder.add(
            [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h],
            label,
            entry,
        )
    return builder.build()


def read_yolo(
    labels_dir: PathLike,
    images_dir: PathLike | None = None,
    class_names: Sequence[str] | None = None,
    *,
    size: tuple[int, int] | None = None,
) -> tuple[list[ImageBoxes], list[str]]:
    """Read YOLO labels: ``labels_dir/<image path without suffix>.txt``, lines ``c cx cy w h``.

    Args:
        labels_dir: folder of ``.txt`` files (mirroring ``images_dir`` when nested).
        images_dir: the images; each one's size turns normalised boxes into pixels, and an
            image without a label file is an image without boxes.
        class_names: None reads ``labels_dir/classes.txt``, one name per line.
        size: (H, W) of every image, when there is no ``images_dir``; each record's
            ``file`` is then the label path without suffix.

    Raises:
        DataFormatError: a line without 5 fields, a class out of range, a label file
            whose image is missing, or an invalid box.
    """
    labels_dir = Path(labels_dir)
    names = (
        list(class_names)
        if class_names is not None
        else _read_names(labels_dir / YOLO_CLASSES_FILE)
    )
    label_files = {
        p.relative_to(labels_dir).with_suffix(""): p
        for p in sorted(labels_dir.rglob("*.txt"))
        if p != labels_dir / YOLO_CLASSES_FILE
    }
    if images_dir is None:
        if size is None:
            raise ConfigError(
                "read_yolo: expected images_dir or size=(H, W) to scale the normalised boxes; "
                "received neither"
            )
        builders = {k: _Builder(str(k), size[1], size[0], str(p)) for k, p in label_files.items()}
    else:
        images = _list_images(Path(images_dir))
        orphans = [k for k in label_files if k not in images]
        if orphans:
            raise DataFormatError(
                f"{label_files[orphans[0]]}: names image {orphans[0]}.* which is not in "
                f"{images_dir}; expected an image with the same name "
                f"({len(orphans)} label files without one)"
            )
        builders = {
            k: _Builder(
                str(p.relative_to(images_dir)), *_image_size(p), str(label_files.get(k, ""))
            )
            for k, p in images.items()
        }
    records = [_read_yolo_file(label_files.get(k), b, len(names)) for k, b in builders.items()]
    _warn_dropped(records, labels_dir)
    return records, names


def write_yolo(
    labels_dir: PathLike, images: Sequence[ImageBoxes], class_names: Sequence[str]
) -> None:
    """Write one YOLO ``.txt`` per record (mirroring ``file``) and ``classes.txt``, atomically.

    Crowd and difficult boxes are not written (YOLO has no flag to ignore them). An image
    without boxes gets an empty file, YOLO's mark of a background image.
    """
    _check_labels(images, class_names)
    targets = _targets(images, lambda p: p.with_suffix(".txt"), reserved=YOLO_CLASSES_FILE)
    texts = []
    for image in images:
        keep = ~(image.crowd | image.difficult)
        b = image.boxes[keep].astype(np.float64)
        scale = np.array([image.width, image.height] * 2)
        centre_size = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1) / scale
        texts.append(
            "".join(
                f"{label} " + " ".join(f"{v:.6f}" for v in row) + "\n"
                for label, row in zip(image.labels[keep], centre_size, strict=True)
            )
        )
    for target, text in zip(targets, texts, strict=True):
        atomic_write_text(Path(labels_dir) / target, text)
    atomic_write_text(Path(labels_dir) / YOLO_CLASSES_FILE, "".join(f"{n}\n" for n in class_names))


@dataclass
class DetectionFolder:
    """Decoded images and their boxes, from ``load_detection_folder``.

    Attributes:
        images: uint8 (N, C, H, W).
        records: each image's annotation, boxes scaled to the decoded size.
        class_names: label i is ``class_names[i]``.
    """

    images: np.ndarray
    records: list[ImageBoxes]
    class_names: list[str]

    @property
    def boxes(self) -> list[np.ndarray]:
        """Per image float32 (n_i, 4) x0, y0, x1, y1 pixels of the decoded image."""
        return [r.boxes for r in self.records]

    @property
    def labels(self) -> list[np.ndarray]:
        """Per image int64 (n_i,) class indices."""
        return [r.labels for r in self.records]

    @property
    def dropped(self) -> int:
        """Zero-area boxes dropped while reading."""
        return sum(r.dropped for r in self.records)


def _decode(
    images_dir: Path, record: ImageBoxes, size: tuple[int, int] | None, channels: int
) -> np.ndarray:
    path = images_dir / record.file
    where = f"{record.source}: image {record.file!r}" + (
        f" (id {record.image_id})" if record.image_id is not None else ""
    )
    if not path.is_file():
        raise DataFormatError(
            f"{where} is not in {images_dir}; expected the file the annotation names"
        )
    try:
        with Image.open(path) as opened:
            actual = opened.size
            image = opened.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise DataFormatError(f"{path}: cannot decode this image ({error})") from None
    if actual != (record.width, record.height):
        raise DataFormatError(
            f"{where}: the annotation says {record.width}x{record.height}, the file is "
            f"{actual[0]}x{actual[1]}; expected the same size"
        )
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (C, H, W)


def load_detection_folder(
    images_dir: PathLike,
    annotations: PathLike,
    fmt: str = "coco",
    size: tuple[int, int] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    channels: int = 3,
) -> DetectionFolder:
    """Decode an image folder and its detection annotations into memory.

    Args:
        images_dir: the folder that annotation file names are relative to.
        annotations: the COCO JSON file, the VOC XML folder or the YOLO labels folder.
        fmt: "coco", "voc" or "yolo".
        size: (H, W) to resize every image to, boxes scaled alike; None keeps the files'
            size, which must then be the same for all.
        class_names: for VOC and YOLO, as in ``read_voc`` / ``read_yolo``.
        channels: 3 (RGB) or 1 (grayscale, Pillow mode "L").

    Raises:
        ConfigError: an unknown ``fmt``, bad ``size`` or ``channels``.
        DataFormatError: as the readers; an image that is missing, unreadable or not the
            size its annotation states; images of different sizes without ``size``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"fmt: expected one of {', '.join(FORMATS)}, received {fmt!r}")
    if channels not in (1, 3):
        raise ConfigError(f"channels: expected 1 or 3, received {channels}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ConfigError(f"size: expected (H, W) >= 1, received {size}")
    folder = Path(images_dir)
    names: Sequence[str]
    if fmt == "coco":
        records, names = read_coco(annotations)
    elif fmt == "voc":
        records, names = read_voc(annotations, class_names)
    else:
        records, names = read_yolo(annotations, folder, class_names)
    if not records:
        raise DataFormatError(f"{annotations}: no images annotated; expected at least one")
    arrays = [_decode(folder, r, size, channels) for r in records]
    shapes = sorted({a.shape[1:] for a in arrays})
    if len(shapes) > 1:
        raise DataFormatError(
            f"{folder}: images of {len(shapes)} sizes (H, W), first {shapes[:3]}; "
            "expected one size, or pass size=(H, W)"
        )
    if size is not None:
        records = [_resized(r, size) for r in records]
    return DetectionFolder(np.stack(arrays), records, list(names))


def _resized(record: ImageBoxes, size: tuple[int, int]) -> ImageBoxes:
    h, w = size
    scale = np.array([w / record.width, h / record.height] * 2, np.float32)
    return dataclasses.replace(record, width=w, height=h, boxes=record.boxes * scale)
