"""Detection annotations: the shared record, its checks, and helpers of every reader and writer."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from cnnlab.core.errors import DataFormatError

EDGE_TOLERANCE = 1.0  # pixels a box may reach outside its image before it is an error
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
class Builder:
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
        """One box as read, x0, y0, x1, y1 pixels; ``entry`` names it in errors."""
        self.xyxy.append(xyxy)
        self.labels.append(label)
        self.crowd.append(crowd)
        self.entries.append(entry)

    def build(self) -> ImageBoxes:
        """Check the boxes, clip them to the image and drop zero-area ones."""
        boxes = np.asarray(self.xyxy, np.float64).reshape(-1, 4)
        keep = clean_boxes(boxes, self.entries, self.width, self.height, self.source)
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


def clean_boxes(
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


def warn_dropped(records: list[ImageBoxes], source: PathLike) -> None:
    """One warning per read with the total of zero-area boxes dropped, if any."""
    total = sum(r.dropped for r in records)
    if total:
        files = [r.file for r in records if r.dropped]
        warnings.warn(
            f"{source}: dropped {total} zero-area boxes in {len(files)} images "
            f"(first: {files[0]}); counted in ImageBoxes.dropped",
            stacklevel=3,
        )


def positive_size(width: float, height: float, source: PathLike, where: str) -> tuple[int, int]:
    """(width, height) as ints, or a DataFormatError unless both are positive integers."""
    if not (float(width).is_integer() and float(height).is_integer() and min(width, height) > 0):
        raise DataFormatError(
            f"{source}: {where}: image size {width}x{height}; expected positive integers"
        )
    return int(width), int(height)


def round_coord(value: float) -> float:
    """A coordinate as writers print it."""
    return round(value, 4)  # float32 holds ~7 digits: 4 decimals keep all of them below 1000 px


def check_labels(images: Sequence[ImageBoxes], class_names: Sequence[str]) -> None:
    """Refuse, before a writer writes anything, a label with no class name."""
    for image in images:
        bad = (image.labels < 0) | (image.labels >= len(class_names))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"{image.file}: box {i} has label {int(image.labels[i])}; "
                f"expected 0..{len(class_names) - 1} (one per class name)"
            )


def output_paths(
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
