"""An image folder and its detection annotations, decoded into memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.core.errors import ConfigError, DataFormatError
from cnnlab.data.annotations.coco import read_coco
from cnnlab.data.annotations.common import ImageBoxes, PathLike
from cnnlab.data.annotations.voc import read_voc
from cnnlab.data.annotations.yolo import read_yolo

FORMATS = ("coco", "voc", "yolo")


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
