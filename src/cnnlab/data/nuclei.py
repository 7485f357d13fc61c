"""A real microscopy image: stardist's bundled 512x512 nuclei image and its instance mask.

The `stardist` wheel (install it with ``pip install --no-deps stardist``: only its data
files are read, nothing of it is imported) ships ``data/images/img2d.tif`` and
``mask2d.tif`` (125 labelled nuclei). cnnlab trains on three quadrants and tests on the
fourth (bottom right), as 64x64 tiles: training tiles overlap (stride 16), test tiles do
not, so the test pixels are exactly the fourth quadrant once.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.core.errors import DatasetUnavailableError
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Resolver
from cnnlab.data.registry import register_dataset

TILE = 64  # px: a tile's side
QUADRANT = 256  # px: the test quadrant is the image's bottom-right 256x256


def stardist_files() -> tuple[Path, Path]:
    """Paths of the image and mask inside the installed `stardist` wheel."""
    try:
        files = importlib.metadata.files("stardist") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = {f.name: Path(str(f.locate())) for f in files if f.name in ("img2d.tif", "mask2d.tif")}
    if len(found) != 2 or not all(p.exists() for p in found.values()):
        raise DatasetUnavailableError(
            "dataset 'nuclei' reads stardist's bundled image: install it with "
            "`pip install --no-deps stardist` (its data files only; nothing is imported)"
        )
    return found["img2d.tif"], found["mask2d.tif"]


def read_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (512, 512), instance labels int64 (512, 512); 0 = background)."""
    image_path, mask_path = stardist_files()
    image = np.asarray(Image.open(image_path)).astype(np.int64)
    labels = np.asarray(Image.open(mask_path)).astype(np.int64)
    scale = 255 / max(int(image.max()), 1) if image.max() > 255 else 1.0
    return np.clip(image * scale, 0, 255).astype(np.uint8), labels


def tiles(array: np.ndarray, stride: int) -> np.ndarray:
    """Every TILE x TILE window at ``stride`` of a 2-D array: (n, TILE, TILE)."""
    h, w = array.shape
    rows = range(0, h - TILE + 1, stride)
    cols = range(0, w - TILE + 1, stride)
    return np.stack([array[r : r + TILE, c : c + TILE] for r in rows for c in cols])


MIN_SIDE = 3  # px: a nucleus cut by a tile edge to a thinner sliver than this gets no box


def instance_boxes(labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of the nuclei in instance-label tiles (n, TILE, TILE), padded: xyxy float32
    (n, M, 4), pixel edges (a nucleus over columns 2..4 has x1 = 2, x2 = 5), and classes
    (n, M), 0 = nucleus, -1 = padding. Slivers thinner than MIN_SIDE are left out."""
    per_tile = []
    for tile in labels:
        rows = []
        for instance in np.unique(tile[tile > 0]):
            ys, xs = np.nonzero(tile == instance)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            if min(box[2] - box[0], box[3] - box[1]) >= MIN_SIDE:
                rows.append(box)
        per_tile.append(rows)
    most = max(1, max(len(rows) for rows in per_tile))
    boxes = torch.zeros(len(per_tile), most, 4)
    classes = torch.full((len(per_tile), most), -1, dtype=torch.int64)
    for i, rows in enumerate(per_tile):
        if rows:
            boxes[i, : len(rows)] = torch.tensor(rows, dtype=torch.float32)
            classes[i, : len(rows)] = 0
    return boxes, classes


def split_quadrants(image: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """(the three training quadrants, the bottom-right test quadrant)."""
    q = QUADRANT
    train = [image[:q, :q], image[:q, q:], image[q:, :q]]
    return train, image[q:, q:]


@register_dataset(
    "nuclei",
    title="stardist's 512x512 fluorescence nuclei image (train 3 quadrants, test the 4th; masks, boxes)",
    origin="the stardist wheel's data/images/img2d.tif + mask2d.tif (pip install --no-deps stardist)",
    options={"stride": 16},
    task="segment",
    facts={"num_classes": 2, "input_shape": (1, TILE, TILE), "train_size": 507, "test_size": 16},
)
def load_nuclei(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    image, labels = read_nuclei()
    mask = (labels > 0).astype(np.uint8)  # foreground = any nucleus
    train_images, test_image = split_quadrants(image)
    train_masks, test_mask = split_quadrants(mask)
    stride = int(opts["stride"])
    x_train = np.concatenate([tiles(q, stride) for q in train_images])[:, None]
    y_train = np.concatenate([tiles(q, stride) for q in train_masks])
    x_test, y_test = tiles(test_image, TILE)[:, None], tiles(test_mask, TILE)
    train_labels, test_labels = split_quadrants(labels)
    boxes_train, classes_train = instance_boxes(
        np.concatenate([tiles(q, stride) for q in train_labels])
    )
    boxes_test, classes_test = instance_boxes(tiles(test_labels, TILE))
    return ImageDataset(
        name, torch.from_numpy(x_train), None, torch.from_numpy(x_test), None, ["nucleus"],
        source=str(stardist_files()[0].parent),
        extra={"split": "train: quadrants 1-3 (tiles, stride 16); test: quadrant 4"},
        targets_train={"mask": torch.from_numpy(y_train), "boxes": boxes_train, "classes": classes_train},
        targets_test={"mask": torch.from_numpy(y_test), "boxes": boxes_test, "classes": classes_test},
        task="segment", mask_classes=["background", "nucleus"],
    )  # fmt: skip


def otsu_threshold(image: np.ndarray) -> int:
    """Otsu's threshold of a uint8 image: the t maximising the between-class variance
    of pixels <= t and > t."""
    counts = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    w0 = np.cumsum(counts)
    w1 = w0[-1] - w0
    m0 = np.cumsum(counts * levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0 / w0 - (m0[-1] - m0) / w1) ** 2 * w0 * w1
    return int(np.nanargmax(between))
