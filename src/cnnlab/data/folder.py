"""Image-folder datasets: one sub-folder per class, decoded once and cached as .npz."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.core.errors import ConfigError
from cnnlab.data.download import atomic_write
from cnnlab.data.readers import DataFormatError, Splits

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
CACHE_VERSION = 1  # bump when the decoding below changes, so old caches are ignored


@dataclass(frozen=True)
class FolderOptions:
    """How an image folder is read.

    Attributes:
        image_size: (H, W) every image is resized to; 32x32 by default because the
            zoo's small-input models expect it and it keeps a folder cheap in memory.
        channels: 1 (grayscale, Pillow mode "L") or 3 (RGB).
        test_fraction: share of each class held out when there is no train/test split
            on disk.
        seed: fixes which images are held out.
    """

    image_size: tuple[int, int] = (32, 32)
    channels: int = 3
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        h, w = self.image_size
        if h < 1 or w < 1:
            raise ConfigError(f"image_size: expected (H, W) >= 1, received {self.image_size}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels: expected 1 or 3, received {self.channels}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction: expected 0 <= f < 1, received {self.test_fraction}")


Listing = dict[str, list[Path]]  # class name -> image files, sorted


def list_classes(root: Path) -> Listing:
    """Image files per class folder (sorted names); other files are ignored.

    Raises:
        DataFormatError: no class folder with at least one image.
    """
    if not root.is_dir():
        raise DataFormatError(f"{root}: expected a folder with one sub-folder per class")
    listing: Listing = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        if files:
            listing[folder.name] = files
    if not listing:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataFormatError(
            f"{root}: expected sub-folders (one per class) holding images ({suffixes}); found none"
        )
    return listing


def cache_key(root: Path, listings: list[Listing], options: FolderOptions) -> str:
    """Hash of everything that changes the decoded arrays: paths, sizes, mtimes, options."""
    files = []
    for listing in listings:
        for paths in listing.values():
            for p in paths:
                stat = p.stat()
                files.append((str(p.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    payload = {
        "version": CACHE_VERSION,
        "root": str(root.resolve()),
        "files": files,
        "options": [
            list(options.image_size),
            options.channels,
            options.test_fraction,
            options.seed,
        ],
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def decode_image(path: Path, options: FolderOptions) -> np.ndarray:
    """Decode one image to uint8 (C, H, W) at ``options.image_size``.

    Raises:
        DataFormatError: Pillow cannot read the file; the message names it. A training
            set with a silently skipped file would differ from the one the user has.
    """
    h, w = options.image_size
    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if options.channels == 1 else "RGB")
        if image.size != (w, h):
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataFormatError(
            f"{path}: cannot decode this image ({error}); expected a file Pillow can read. "
            "Fix or remove it."
        ) from error
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (C, H, W)


def _decode_all(files: list[Path], options: FolderOptions) -> np.ndarray:
    c, (h, w) = options.channels, options.image_size
    out = np.empty((len(files), c, h, w), np.uint8)
    for i, path in enumerate(files):
        out[i] = decode_image(path, options)
    return out


def _flatten(listing: Listing, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    files = [p for name in classes for p in listing.get(name, [])]
    labels = [i for i, name in enumerate(classes) for _ in listing.get(name, [])]
    return files, np.asarray(labels, np.int64)


def _split_per_class(labels: np.ndarray, options: FolderOptions) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: round(test_fraction * n) images of each class go to test."""
    rng = np.random.default_rng(options.seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = round(options.test_fraction * len(members))
        test.extend(rng.permutation(members)[:n_test].tolist())
    is_test = np.zeros(len(labels), bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_folder(
    path: str | os.PathLike[str], cache_dir: Path, options: FolderOptions
) -> tuple[Splits, str]:
    """Load an image folder, decoding only when the cached arrays are stale.

    Layout: ``path/<class>/*.png`` (split by ``test_fraction``), or ``path/train/<class>/``
    and ``path/test/<class>/`` (used as given). Class names are the sorted folder names
    of the training set.

    Returns:
        The splits, and how the split was made (for the run record).
    """
    root = Path(path).expanduser().resolve()
    listings, how = _listings(root)
    key = cache_key(root, listings, options)
    cached = cache_dir / "folder" / f"{root.name}-{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            return _unpack(arrays), how
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    arrays = _build_arrays(listings, options)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    with contextlib.suppress(OSError):  # read-only cache: decode again next time
        atomic_write(cached, buffer.getvalue())
    return _unpack(arrays), how


def _listings(root: Path) -> tuple[list[Listing], str]:
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        train, test = list_classes(train_dir), list_classes(test_dir)
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise DataFormatError(
                f"{test_dir}: classes {', '.join(unknown)} have no folder in {train_dir}; "
                f"expected test classes among {', '.join(train)}"
            )
        return [train, test], "train/ and test/ folders"
    if not root.is_dir():
        raise DataFormatError(f"{root}: expected a folder with one sub-folder per class")
    return [list_classes(root)], "split per class with test_fraction"


def _build_arrays(listings: list[Listing], options: FolderOptions) -> dict[str, np.ndarray]:
    classes = list(listings[0])
    if len(listings) == 2:
        train_files, y_train = _flatten(listings[0], classes)
        test_files, y_test = _flatten(listings[1], classes)
        x_train, x_test = _decode_all(train_files, options), _decode_all(test_files, options)
    else:
        files, labels = _flatten(listings[0], classes)
        x = _decode_all(files, options)
        train, test = _split_per_class(labels, options)
        x_train, y_train, x_test, y_test = x[train], labels[train], x[test], labels[test]
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "classes": np.asarray(classes, dtype=str),
    }


def _unpack(arrays: dict[str, np.ndarray]) -> Splits:
    classes = [str(c) for c in arrays["classes"]]
    return Splits(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], classes)
