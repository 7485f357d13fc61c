"""Pascal VOC XML: read into ``ImageBoxes`` and write back, one file per image.

``<bndbox>`` values are 1-based inclusive pixel indices: x0 = xmin - 1, x1 = xmax (written
back as xmin = x0 + 1, xmax = x1). Crowd boxes are written with ``<difficult>1``, VOC's own
"ignore" flag.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET  # local files only; defusedxml is not a dependency
from collections.abc import Iterable, Sequence
from pathlib import Path

from cnnlab.core.errors import DataFormatError
from cnnlab.core.io import atomic_write_text
from cnnlab.data.annotations.common import (
    Builder,
    ImageBoxes,
    PathLike,
    check_labels,
    output_paths,
    positive_size,
    round_coord,
    warn_dropped,
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


def _parse_voc(path: Path) -> tuple[Builder, list[str]]:
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
    width, height = positive_size(width, height, path, "size")
    builder = Builder(_xml_text(root, "filename", path, "annotation"), width, height, str(path))
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
    warn_dropped(records, source)
    return records, names


def _number(value: float) -> str:
    value = round_coord(value)
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


def write_voc(folder: PathLike, images: Sequence[ImageBoxes], class_names: Sequence[str]) -> None:
    """Write one VOC XML per record, ``folder/<image stem>.xml``, each atomically."""
    check_labels(images, class_names)
    targets = output_paths(images, lambda p: p.stem + ".xml")
    texts = [_voc_xml(image, class_names) for image in images]
    for target, text in zip(targets, texts, strict=True):
        atomic_write_text(Path(folder) / target, text)
