"""YOLO txt labels: read into ``ImageBoxes`` and write back, one file per image.

Lines are ``class cx cy w h`` divided by the image size. YOLO has no flag to ignore a box,
so the writer skips crowd and difficult boxes, as the Ultralytics COCO and VOC converters do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.core.errors import ConfigError, DataFormatError
from cnnlab.core.io import atomic_write_text
from cnnlab.data.annotations.common import (
    Builder,
    ImageBoxes,
    PathLike,
    check_labels,
    output_paths,
    warn_dropped,
)
from cnnlab.data.folder import IMAGE_SUFFIXES

YOLO_CLASSES_FILE = "classes.txt"  # labelImg's name for the class list beside the labels


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


def _read_yolo_file(path: Path | None, builder: Builder, num_classes: int) -> ImageBoxes:
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
        builders = {k: Builder(str(k), size[1], size[0], str(p)) for k, p in label_files.items()}
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
            k: Builder(str(p.relative_to(images_dir)), *_image_size(p), str(label_files.get(k, "")))
            for k, p in images.items()
        }
    records = [_read_yolo_file(label_files.get(k), b, len(names)) for k, b in builders.items()]
    warn_dropped(records, labels_dir)
    return records, names


def write_yolo(
    labels_dir: PathLike, images: Sequence[ImageBoxes], class_names: Sequence[str]
) -> None:
    """Write one YOLO ``.txt`` per record (mirroring ``file``) and ``classes.txt``, atomically.

    Crowd and difficult boxes are not written (YOLO has no flag to ignore them). An image
    without boxes gets an empty file, YOLO's mark of a background image.
    """
    check_labels(images, class_names)
    targets = output_paths(images, lambda p: p.with_suffix(".txt"), reserved=YOLO_CLASSES_FILE)
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
