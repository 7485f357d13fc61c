"""Registered generated and task datasets: composed scenes (multi-label, segmentation,
boxes), procedural faces and Kaggle's facial keypoints CSV (keypoints)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Resolver
from cnnlab.data.faces import (
    FLIP_INDEX,
    KEYPOINT_NAMES,
    FaceKeypoints,
    generate_faces,
    read_facial_keypoints_csv,
)
from cnnlab.data.registry import register_dataset
from cnnlab.data.scenes import Scenes, compose_scenes, load_scenes, save_scenes


def padded_boxes(scenes: Scenes) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-scene box lists as (S, M, 4) boxes and (S, M) classes, -1 marking padding."""
    most = max((len(b) for b in scenes.boxes), default=0)
    boxes = torch.zeros(len(scenes.boxes), max(most, 1), 4)
    classes = torch.full((len(scenes.boxes), max(most, 1)), -1, dtype=torch.int64)
    for i, (b, c) in enumerate(zip(scenes.boxes, scenes.classes, strict=True)):
        boxes[i, : len(b)], classes[i, : len(c)] = b, c
    return boxes, classes


def _targets(scenes: Scenes) -> dict[str, torch.Tensor]:
    boxes, classes = padded_boxes(scenes)
    return {"labels": scenes.labels, "mask": scenes.masks, "boxes": boxes, "classes": classes}


@register_dataset(
    "scenes",
    title="Composed scenes: 1-4 Fashion-MNIST items on a canvas (labels, masks, boxes)",
    origin="generated from Fashion-MNIST (train items -> train scenes, test items -> test)",
    options={
        "source": "fashion-mnist", "canvas": 64, "train_size": 20000, "test_size": 4000,
        "max_items": 4, "seed": 0,
    },
    task="multilabel",
    facts={"num_classes": 10, "input_shape": (1, 64, 64), "train_size": 20000, "test_size": 4000},
)  # fmt: skip
def load_scenes_dataset(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """Scenes built (once, then cached as .npz) from a source dataset's items.

    Test scenes use only the source's test images, so no item is seen in training.
    Targets: ``labels`` (multi-hot, the default multilabel task), ``mask`` (0 =
    background, class + 1; ``--task segment``), ``boxes`` + ``classes``.
    """
    from cnnlab.data import load

    if opts["source"] not in ("fashion-mnist", "mnist"):
        raise ConfigError(
            f"load('scenes'): expected source 'fashion-mnist' or 'mnist', received {opts['source']!r}"
        )
    key = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:12]
    folder = resolver.cache_dir / "scenes"
    source: ImageDataset | None = None
    splits = {}
    for split, size, offset in (("train", opts["train_size"], 0), ("test", opts["test_size"], 1)):
        path = folder / f"{opts['source']}-{split}-{key}.npz"
        if path.exists():
            splits[split] = load_scenes(path)
            continue
        if source is None:
            source = load(opts["source"], cache_dir=resolver.cache_dir)
        x, y = (
            (source.x_train, source.y_train) if split == "train" else (source.x_test, source.y_test)
        )
        assert y is not None
        splits[split] = compose_scenes(
            x, y, source.num_classes, int(size), canvas=int(opts["canvas"]),
            max_items=int(opts["max_items"]), seed=int(opts["seed"]) * 2 + offset,
        )  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        save_scenes(path, splits[split])
    classes = _class_names(opts["source"])
    return ImageDataset(
        name, splits["train"].images, None, splits["test"].images, None, classes,
        source=str(folder), extra={"split": "train scenes from train items, test from test"},
        targets_train=_targets(splits["train"]), targets_test=_targets(splits["test"]),
        task="multilabel", mask_classes=["background", *classes],
    )  # fmt: skip


def _class_names(source: str) -> list[str]:
    from cnnlab.data.sources import SOURCES

    return list(SOURCES[source].classes)


def _faces_dataset(
    name: str, train: FaceKeypoints, test: FaceKeypoints, source: str
) -> ImageDataset:
    def targets(faces: FaceKeypoints) -> dict[str, torch.Tensor]:
        return {"keypoints": faces.keypoints, "visible": faces.visible}

    return ImageDataset(
        name, train.images, None, test.images, None, list(KEYPOINT_NAMES), source=source,
        targets_train=targets(train), targets_test=targets(test), task="keypoints",
        flip_index=list(FLIP_INDEX),
    )  # fmt: skip


@register_dataset(
    "faces",
    title="Procedural 96x96 grey faces with the 15 Kaggle facial keypoints known exactly",
    origin="generated (cnnlab.data.faces.generate_faces)",
    options={"train_size": 8000, "test_size": 2000, "seed": 0},
    task="keypoints",
    facts={"num_classes": 15, "input_shape": (1, 96, 96), "train_size": 8000, "test_size": 2000},
)
def load_faces_dataset(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """Generated faces: train and test drawn with different seeds (about 5 s per 10,000)."""
    seed = int(opts["seed"])
    train = generate_faces(int(opts["train_size"]), seed=2 * seed)
    test = generate_faces(int(opts["test_size"]), seed=2 * seed + 1)
    return _faces_dataset(name, train, test, "cnnlab.data.faces.generate_faces")


@register_dataset(
    "facial-keypoints",
    title="Kaggle Facial Keypoints Detection (training.csv; rows with missing points kept)",
    origin="https://www.kaggle.com/c/facial-keypoints-detection (option path=<training.csv>)",
    options={"path": None, "test_fraction": 0.2, "seed": 0},
    task="keypoints",
    facts={"num_classes": 15, "input_shape": (1, 96, 96)},
)
def load_facial_keypoints(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """The competition's training.csv, split at random (seeded) into train and test.

    Missing keypoints stay as not ``visible``: the loss and metrics mask them out.
    """
    if opts.get("path") is None:
        raise ConfigError(f"load({name!r}): expected option path=<training.csv>, received none")
    faces = read_facial_keypoints_csv(opts["path"])
    fraction = float(opts["test_fraction"])
    if not 0 < fraction < 1:
        raise ConfigError(f"Expected test_fraction in (0, 1), received test_fraction={fraction}")
    order = torch.randperm(len(faces), generator=torch.Generator().manual_seed(int(opts["seed"])))
    n_test = max(1, round(len(faces) * fraction))
    parts = [
        FaceKeypoints(faces.images[i], faces.keypoints[i], faces.visible[i])
        for i in (order[n_test:], order[:n_test])
    ]
    return _faces_dataset(name, parts[0], parts[1], str(opts["path"]))
