"""Image folders: class names, resizing, seeded split, decode-once cache, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab import data
from cnnlab.core.errors import ConfigError
from cnnlab.data.readers import DataFormatError

# Solid colours survive any resize exactly, so they are the oracle for pixel values.
COLOURS = {"bird": (255, 0, 0), "cat": (0, 255, 0), "dog": (0, 0, 255)}
SIZES = [(20, 10), (7, 31), (64, 64), (33, 17), (9, 9)]  # (W, H), all different


def make_folder(root: Path, per_class: int = 5) -> Path:
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            mode = "L" if (name == "dog" and i == 0) else "RGB"
            fill = sum(colour) // 3 if mode == "L" else colour
            Image.new(mode, SIZES[i % len(SIZES)], fill).save(folder / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image: ignored")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "images")


def count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_open = Image.open

    def counting_open(fp: object, *args: object, **kwargs: object) -> Image.Image:
        calls.append(str(fp))
        return real_open(fp, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", counting_open)
    return calls


def test_folder_shapes_labels_and_pixels(folder: Path, tmp_path: Path) -> None:
    ds = data.load("folder", path=folder, cache_dir=tmp_path / "cache", image_size=(12, 16))
    assert ds.classes == ["bird", "cat", "dog"]  # sorted folder names
    assert ds.x_train.shape == (12, 3, 12, 16) and ds.x_test.shape == (3, 3, 12, 16)
    assert ds.y_test.bincount().tolist() == [1, 1, 1]  # round(0.2 * 5) per class
    for x, y in zip(
        torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test]), strict=True
    ):
        colour = COLOURS[ds.classes[int(y)]]
        pixel = tuple(x[:, 5, 7].tolist())
        grey = sum(colour) // 3
        assert pixel in (colour, (grey,) * 3)  # the one "L" dog is grey in every channel


def test_folder_grayscale_default_size_and_split_seed(folder: Path, tmp_path: Path) -> None:
    ds = data.load("folder", path=folder, cache_dir=tmp_path, channels=1)
    assert ds.input_shape == (1, 32, 32)
    # ITU-R 601-2 luma, as Pillow's convert("L"): 299/1000 R + 587/1000 G + 114/1000 B.
    assert int(ds.x_train[ds.y_train == 0][0, 0, 0, 0]) == 76  # bird: pure red
    other = data.load("folder", path=folder, cache_dir=tmp_path, channels=1, seed=1)
    same = data.load("folder", path=folder, cache_dir=tmp_path, channels=1)
    assert torch.equal(ds.x_test, same.x_test) and torch.equal(ds.y_test, same.y_test)
    assert len(other.x_test) == 3


def test_second_load_does_not_decode(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opens = count_opens(monkeypatch)
    first = data.load("folder", path=folder, cache_dir=tmp_path, image_size=(8, 8))
    assert len(opens) == 15
    second = data.load("folder", path=folder, cache_dir=tmp_path, image_size=(8, 8))
    assert len(opens) == 15, "second load decoded images again"
    assert torch.equal(first.x_train, second.x_train) and first.classes == second.classes
    assert len(list((tmp_path / "folder").glob("*.npz"))) == 1

    data.load("folder", path=folder, cache_dir=tmp_path, image_size=(9, 9))  # new option: new key
    assert len(opens) == 30
    os.utime(folder / "cat" / "0.png", ns=(1, 1))  # a changed file: decode again
    data.load("folder", path=folder, cache_dir=tmp_path, image_size=(8, 8))
    assert len(opens) == 45


def test_train_and_test_subfolders_are_used_as_given(tmp_path: Path) -> None:
    root = tmp_path / "split"
    make_folder(root / "train", per_class=4)
    make_folder(root / "test", per_class=2)
    (root / "test" / "bird").rename(root / "test" / ".hidden")  # test may lack a class
    ds = data.load("folder", path=root, cache_dir=tmp_path / "c", image_size=(4, 4))
    assert ds.classes == ["bird", "cat", "dog"]
    assert len(ds.x_train) == 12 and ds.y_test.tolist() == [1, 1, 2, 2]
    assert ds.extra["split"] == "train/ and test/ folders"


def test_unreadable_image_is_an_error_naming_it(folder: Path, tmp_path: Path) -> None:
    bad = folder / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataFormatError, match=r"dog/broken\.png: cannot decode"):
        data.load("folder", path=folder, cache_dir=tmp_path)


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataFormatError, match=r"one per class\) holding images"):
        data.load("folder", path=tmp_path / "empty", cache_dir=tmp_path)
    with pytest.raises(DataFormatError, match="expected a folder"):
        data.load("folder", path=tmp_path / "nowhere", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"channels: expected 1 or 3, received 4"):
        data.load("folder", path=tmp_path / "empty", channels=4)
    root = tmp_path / "mismatch"
    make_folder(root / "train", per_class=1)
    make_folder(root / "test", per_class=1)
    (root / "test" / "dog").rename(root / "test" / "wolf")
    with pytest.raises(DataFormatError, match=r"classes wolf have no folder"):
        data.load("folder", path=root, cache_dir=tmp_path)
