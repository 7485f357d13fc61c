"""Datasets: find (cache, system folders, download), verify, and load whole splits as uint8 tensors.

Usage: ``data.load("fashion-mnist").x_train`` is a uint8 tensor shaped (60000, 1, 28, 28),
found in ``$CNNLAB_DATA``, then ``/usr/share/datasets``, then downloaded and verified.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.data import download as _download
from cnnlab.data.annotations import FORMATS, ImageBoxes, load_detection_folder
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Resolver, default_cache_dir
from cnnlab.data.folder import FolderOptions, load_folder
from cnnlab.data.readers import (
    DataFormatError,
    Splits,
    read_cifar_archive,
    read_digits,
    read_idx,
    read_npz,
)
from cnnlab.data.real_sources import REAL_SOURCES
from cnnlab.data.registry import dataset_info, register_dataset, registered_datasets
from cnnlab.data.sources import CIFAR100_COARSE, LOCAL_KINDS, SOURCES, DatasetSource

SOURCES.update(REAL_SOURCES)  # CWRU, MR and FSDD resolve, verify and download alike

__all__ = [
    "DataFormatError",
    "ImageDataset",
    "default_cache_dir",
    "describe",
    "fetch",
    "find_local",
    "list_datasets",
    "load",
    "register_dataset",
]

PathLike = str | os.PathLike[str]

DIGITS_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html"


def list_datasets(task: str | None = None) -> list[str]:
    """Names accepted by :func:`load` (whose default task is ``task``), sorted."""
    return registered_datasets(task)


def describe(name: str) -> dict[str, Any]:
    """What a dataset is, for the ``cnnlab datasets`` table. Touches no file.

    Returns:
        name, title, num_classes, input_shape (C, H, W), train_size, test_size, source
        (URL or origin); shapes and sizes are None for ``folder`` and ``npz``.

    Raises:
        UnknownNameError: ``name`` is not in :func:`list_datasets`.
    """
    info = dataset_info(name)
    if name in SOURCES:
        src = SOURCES[name]
        facts = {
            "num_classes": len(src.classes), "input_shape": src.input_shape,
            "train_size": src.train_size, "test_size": src.test_size, "source": src.urls[0],
        }  # fmt: skip
    else:
        facts = {"num_classes": None, "input_shape": None, "train_size": None, "test_size": None}
        facts |= {"source": info.origin, **info.facts}
    return {"name": name, "title": info.title, **facts, "task": info.task}


def find_local(
    name: str,
    *,
    cache_dir: PathLike | None = None,
    system_dirs: Iterable[PathLike] | None = None,
) -> dict[str, Path] | None:
    """Verified local copies of a downloadable dataset's files, or None. Never downloads.

    Raises:
        UnknownNameError: unknown name.
        ConfigError: ``name`` is not a downloadable dataset (digits, folder, npz).
        ChecksumError: a local copy exists but is corrupt.
    """
    source = _source(name)
    return _download.find_local(source, Resolver.create(cache_dir, system_dirs, download=False))


def fetch(
    name: str,
    *,
    cache_dir: PathLike | None = None,
    system_dirs: Iterable[PathLike] | None = None,
    mirror: str | None = None,
    download: bool = True,
) -> dict[str, Path]:
    """Make sure a verified copy of every file exists locally, downloading what is missing.

    Returns:
        file name -> path (in the cache or a system folder).

    Raises:
        ChecksumError: a copy does not match its published checksum.
        DatasetUnavailableError: no copy and no download; the message says how to get one.
    """
    source = _source(name)
    return _download.resolve(source, Resolver.create(cache_dir, system_dirs, mirror, download))


def load(
    name: str,
    *,
    cache_dir: PathLike | None = None,
    system_dirs: Iterable[PathLike] | None = None,
    mirror: str | None = None,
    download: bool = True,
    **options: Any,
) -> ImageDataset:
    """Load a whole dataset into memory as uint8 (N, C, H, W) tensors and int64 labels.

    Files are looked up in the user cache (``cache_dir``, default ``$CNNLAB_DATA`` or
    ``~/.cache/cnnlab``) under ``<name>/``, then in ``<root>/<name>/`` for each of
    ``system_dirs`` (default ``/usr/share/datasets``, ``/usr/local/share/datasets``), then
    downloaded into the cache from the official URLs, or from ``mirror`` /
    ``$CNNLAB_MIRROR`` alone when given. Every file is checked against its published
    checksum.

    Args:
        name: one of :func:`list_datasets`.
        cache_dir: user cache root.
        system_dirs: read-only roots searched after the cache; ``()`` searches none.
        mirror: base URL to download from instead of the official source; ``{name}``
            in it is replaced by the dataset name.
        download: allow downloading.
        **options: per dataset. cifar100: ``label="fine"|"coarse"``. digits: ``seed``.
            folder: ``path``, ``image_size=(H, W)``, ``channels=1|3``, ``test_fraction``,
            ``seed``. npz: ``path``, ``layout="auto"|"NCHW"|"NHWC"``. detection-folder:
            ``path``, ``annotations``, ``format="coco"|"voc"|"yolo"``, ``image_size``,
            ``channels``, ``test_fraction``, ``seed``.

    Raises:
        UnknownNameError: unknown dataset name.
        ConfigError: unknown or missing option.
        ChecksumError: a file does not match its checksum.
        DatasetUnavailableError: no copy and no download; says how to get one.
        DataFormatError: a file that is not in the expected format; names it.
    """
    info = dataset_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        accepted = ", ".join(info.options) or "none"
        raise ConfigError(
            f"load({name!r}): unknown option(s) {', '.join(unknown)}; accepted: {accepted}"
        )
    opts = info.options | options
    resolver = Resolver.create(cache_dir, system_dirs, mirror, download)
    loaded = info.loader(name, resolver, opts)
    if isinstance(loaded, ImageDataset):
        return loaded
    splits, where, extra = loaded
    return ImageDataset(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(splits.x_train)),
        y_train=torch.from_numpy(np.ascontiguousarray(splits.y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(splits.x_test)),
        y_test=torch.from_numpy(np.ascontiguousarray(splits.y_test, dtype=np.int64)),
        classes=list(splits.classes),
        source=where,
        extra=extra,
    )


Loaded = tuple[Splits, str, dict[str, str]]  # splits, where they came from, notes for the record


@register_dataset(
    "fashion-mnist", title=SOURCES["fashion-mnist"].title, origin=SOURCES["fashion-mnist"].urls[0]
)
@register_dataset("mnist", title=SOURCES["mnist"].title, origin=SOURCES["mnist"].urls[0])
@register_dataset("cifar10", title=SOURCES["cifar10"].title, origin=SOURCES["cifar10"].urls[0])
@register_dataset(
    "cifar100", title=SOURCES["cifar100"].title, origin=SOURCES["cifar100"].urls[0],
    options={"label": "fine"},  # "fine" (100 classes) or "coarse" (20 superclasses)
)  # fmt: skip
def _load_remote(name: str, resolver: Resolver, opts: dict[str, Any]) -> Loaded:
    source = SOURCES[name]
    if opts.get("label", "fine") not in ("fine", "coarse"):  # checked before any download
        raise ConfigError(f"load({name!r}): label={opts['label']!r}; expected 'fine' or 'coarse'")
    paths = _download.resolve(source, resolver)
    where = ", ".join(sorted({str(p.parent) for p in paths.values()}))
    if name in ("fashion-mnist", "mnist"):
        splits = _read_mnist_format(source, paths)
    else:
        splits = _read_cifar(source, paths[source.files[0].name], opts.get("label", "fine"))
    notes = {"split": "official"} | ({"label": opts["label"]} if "label" in opts else {})
    return splits, where, notes


def _read_mnist_format(source: DatasetSource, paths: dict[str, Path]) -> Splits:
    x_train, y_train, x_test, y_test = (read_idx(paths[f.name]) for f in source.files)
    # (N, 28, 28) -> (N, 1, 28, 28)
    return Splits(x_train[:, None], y_train, x_test[:, None], y_test, list(source.classes))


def _read_cifar(source: DatasetSource, archive: Path, label: str) -> Splits:
    if source.name == "cifar10":
        folder = "cifar-10-batches-bin/"
        train = [f"{folder}data_batch_{i}.bin" for i in range(1, 6)]
        splits = read_cifar_archive(
            archive, train, [folder + "test_batch.bin"], 1, 0, folder + "batches.meta.txt"
        )
        return splits._replace(classes=splits.classes or list(source.classes))
    # CIFAR-100 records: coarse label byte, fine label byte, 3072 pixel bytes.
    folder = "cifar-100-binary/"
    index, names, default = (
        (1, "fine_label_names.txt", source.classes)
        if label == "fine"
        else (0, "coarse_label_names.txt", CIFAR100_COARSE)
    )
    splits = read_cifar_archive(
        archive, [folder + "train.bin"], [folder + "test.bin"], 2, index, folder + names
    )
    return splits._replace(classes=splits.classes or list(default))


@register_dataset(
    "digits", title=LOCAL_KINDS["digits"][0], origin=DIGITS_URL, options={"seed": 0},
    facts={"num_classes": 10, "input_shape": (1, 8, 8), "train_size": 1437, "test_size": 360},
)  # fmt: skip
def _load_digits(name: str, resolver: Resolver, opts: dict[str, Any]) -> Loaded:
    splits = read_digits(seed=int(opts["seed"]))
    return (
        splits,
        "sklearn.datasets.load_digits",
        {"split": f"stratified, 360 test, seed {opts['seed']}"},
    )


@register_dataset(
    "folder", title=LOCAL_KINDS["folder"][0], origin=LOCAL_KINDS["folder"][1],
    options={
        "path": None, "image_size": (32, 32), "channels": 3, "test_fraction": 0.2, "seed": 0,
    },
)  # fmt: skip
def _load_folder(name: str, resolver: Resolver, opts: dict[str, Any]) -> Loaded:
    path = _require_path(name, opts)
    options = FolderOptions(
        _image_size(opts), int(opts["channels"]), float(opts["test_fraction"]), int(opts["seed"])
    )
    splits, how = load_folder(path, resolver.cache_dir, options)
    return splits, str(Path(path).expanduser().resolve()), {"split": how}


@register_dataset(
    "npz", title=LOCAL_KINDS["npz"][0], origin=LOCAL_KINDS["npz"][1],
    options={"path": None, "layout": "auto"},
)  # fmt: skip
def _load_npz(name: str, resolver: Resolver, opts: dict[str, Any]) -> Loaded:
    path = _require_path(name, opts)
    return read_npz(path, layout=opts["layout"]), str(path), {"split": "as stored"}


@register_dataset(
    "detection-folder",
    title="images with detection boxes: COCO JSON, Pascal VOC XML or YOLO txt",
    origin="options path=<images folder>, annotations=<file or folder>",
    options={
        "path": None, "annotations": None, "format": "coco", "image_size": (64, 64),
        "channels": 3, "test_fraction": 0.2, "seed": 0,
    },
    task="detect",
)  # fmt: skip
def _load_detection_folder(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """Images and their boxes, resized to ``image_size`` and split at random (seeded).

    ``channels`` defaults to 3 (RGB): annotated photos are colour, and a grey image loads
    as three equal channels. Crowd (COCO) and difficult (VOC) boxes are left out of the
    targets, as torchvision's COCO reference leaves out crowds: the detect task has no
    "ignore" flag, so a kept one would train and score as one ordinary object.
    """
    for key, what in (("path", "images folder"), ("annotations", "file or folder")):
        if opts.get(key) is None:
            raise ConfigError(f"load({name!r}): expected option {key}=<{what}>, received none")
    if opts["format"] not in FORMATS:
        raise ConfigError(
            f"load({name!r}): format={opts['format']!r}; expected one of {', '.join(FORMATS)}"
        )
    fraction = float(opts["test_fraction"])
    if not 0 < fraction < 1:
        raise ConfigError(f"load({name!r}): expected test_fraction in (0, 1), received {fraction}")
    path = Path(opts["path"]).expanduser()
    found = load_detection_folder(
        path, opts["annotations"], opts["format"], _image_size(opts), channels=int(opts["channels"])
    )
    train, test = _random_split(name, len(found.records), fraction, int(opts["seed"]))
    images = torch.from_numpy(found.images)
    records = found.records
    ignored = sum(int((r.crowd | r.difficult).sum()) for r in records)
    extra = {
        "split": f"random, test_fraction {fraction}, seed {opts['seed']}",
        "annotations": f"{opts['format']} {opts['annotations']}",
        "ignored": f"{ignored} crowd or difficult boxes left out",
    }
    return ImageDataset(
        name, images[train], None, images[test], None, list(found.class_names),
        source=str(path.resolve()), extra=extra, task="detect",
        targets_train=_box_targets([records[i] for i in train.tolist()], images.shape[2:]),
        targets_test=_box_targets([records[i] for i in test.tolist()], images.shape[2:]),
    )  # fmt: skip


def _random_split(
    name: str, n: int, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test indices (each ascending), round(n * fraction) >= 1 of them test."""
    n_test = max(1, round(n * fraction))
    if n_test >= n:
        raise ConfigError(
            f"load({name!r}): {n} annotated images leave none to train on with "
            f"test_fraction={fraction}; expected at least 2 images"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:].sort().values, order[:n_test].sort().values


def _box_targets(records: list[ImageBoxes], size: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-image boxes as (N, M, 4) xyxy pixels and (N, M) classes, -1 marking padding."""
    kept = [~(r.crowd | r.difficult) for r in records]
    most = max((int(k.sum()) for k in kept), default=0)
    boxes = torch.zeros(len(records), max(most, 1), 4)
    classes = torch.full((len(records), max(most, 1)), -1, dtype=torch.int64)
    for i, (record, keep) in enumerate(zip(records, kept, strict=True)):
        n = int(keep.sum())
        boxes[i, :n] = torch.from_numpy(record.boxes[keep])
        classes[i, :n] = torch.from_numpy(record.labels[keep])
    # Scaling by new/old size can land a far edge one float step past the image, which
    # the detect task refuses.
    h, w = size
    boxes[..., 0::2].clamp_(0, w)
    boxes[..., 1::2].clamp_(0, h)
    return {"boxes": boxes, "classes": classes}


def _image_size(opts: dict[str, Any]) -> tuple[int, int]:
    """The ``image_size`` option, an int or (H, W), as (H, W)."""
    size = opts["image_size"]
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _require_path(name: str, opts: dict[str, Any]) -> Path:
    if opts.get("path") is None:
        kind = "folder" if name == "folder" else "file"
        raise ConfigError(f"load({name!r}): expected option path=<{kind}>, received none")
    return Path(opts["path"]).expanduser()


def _check_name(name: str) -> None:
    dataset_info(name)


def _source(name: str) -> DatasetSource:
    _check_name(name)
    if name not in SOURCES:
        raise ConfigError(
            f"{name!r} has no files to fetch; expected one of: {', '.join(sorted(SOURCES))}"
        )
    return SOURCES[name]


from cnnlab.data import cwru as cwru  # noqa: E402  (registers cwru, bearing-synthetic)
from cnnlab.data import fsdd as fsdd  # noqa: E402  (registers fsdd, fsdd-mulaw)
from cnnlab.data import mnist5k as mnist5k  # noqa: E402  (registers mnist-5k)
from cnnlab.data import mr as mr  # noqa: E402  (registers mr)
from cnnlab.data import nuclei as nuclei  # noqa: E402  (registers the dataset)
from cnnlab.data import synthetic as synthetic  # noqa: E402  (registers generated datasets)
