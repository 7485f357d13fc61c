"""digits (scikit-learn) and npz datasets: shapes, value scaling, layouts and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from cnnlab import data
from cnnlab.core.errors import ConfigError
from cnnlab.data.readers import DataFormatError

# -- digits -----------------------------------------------------------------------------


def test_digits_split_and_scaling() -> None:
    ds = data.load("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == torch.uint8 and ds.classes == [str(d) for d in range(10)]

    # Every image is one of sklearn's, scaled 0..16 -> 0..255; together they are all of them.
    digits = load_digits()
    scaled = np.rint(digits.images * 255 / 16).astype(np.uint8)
    ours = np.concatenate([ds.x_train.numpy(), ds.x_test.numpy()])[:, 0]
    assert sorted(map(bytes, ours)) == sorted(map(bytes, scaled))
    assert int(ds.x_train.max()) == 255 and int(ds.x_train.min()) == 0

    # Stratified: each class holds out about 20 % of its images.
    total = np.bincount(digits.target)
    held = ds.y_test.bincount(minlength=10).numpy()
    assert np.all(np.abs(held - total * 360 / 1797) <= 1)


def test_digits_split_is_fixed_by_seed() -> None:
    a, b = data.load("digits"), data.load("digits")
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    c = data.load("digits", seed=1)
    assert not torch.equal(a.x_test, c.x_test)


# -- npz --------------------------------------------------------------------------------


def nchw(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 5, 6), dtype=np.uint8)


def save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "float-NHWC"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    x_train, x_test = nchw(4, 0), nchw(2, 1)
    y_train, y_test = np.array([0, 1, 2, 1]), np.array([2, 0])
    stored_train, stored_test = x_train, x_test
    if layout != "NCHW":
        stored_train, stored_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    if layout.startswith("float"):
        stored_train, stored_test = stored_train / 255.0, stored_test.astype(np.float32) / 255
    path = save(
        tmp_path / "d.npz", x_train=stored_train, y_train=y_train, x_test=stored_test, y_test=y_test
    )

    ds = data.load("npz", path=path)
    np.testing.assert_array_equal(ds.x_train.numpy(), x_train)
    np.testing.assert_array_equal(ds.x_test.numpy(), x_test)
    assert ds.y_train.tolist() == [0, 1, 2, 1] and ds.classes == ["0", "1", "2"]


def test_npz_grayscale_nhw_and_classes(tmp_path: Path) -> None:
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    path = save(
        tmp_path / "g.npz",
        x_train=x,
        y_train=np.array([0, 1]),
        x_test=x[:1],
        y_test=np.array([1]),
        classes=np.array(["cat", "dog"]),
    )
    ds = data.load("npz", path=str(path))
    assert ds.x_train.shape == (2, 1, 4, 4) and ds.classes == ["cat", "dog"]
    assert ds.x_train[1, 0, 3, 3] == 31


def test_npz_missing_keys_lists_expected_and_received(tmp_path: Path) -> None:
    path = save(tmp_path / "bad.npz", images=np.zeros((3, 4, 4)), labels=np.zeros(3))
    with pytest.raises(DataFormatError) as caught:
        data.load("npz", path=path)
    message = str(caught.value)
    assert "expected keys x_train, y_train, x_test, y_test" in message
    assert "images(3, 4, 4)" in message and "labels(3,)" in message


@pytest.mark.parametrize(
    ("x_train", "y_train", "pattern"),
    [
        (np.full((2, 4, 4), 1.5), np.array([0, 1]), r"\[0, 1\]; received values in \[1.5, 1.5\]"),
        (
            np.zeros((2, 4, 4), np.uint8),
            np.array([0, 1, 1]),
            r"expected integer labels shaped \(2,\)",
        ),
        (np.zeros((2, 5, 5, 5), np.uint8), np.array([0, 1]), r"cannot tell the channel axis"),
        (np.zeros((2, 4), np.uint8), np.array([0, 1]), r"received shape \(2, 4\)"),
        (np.full((2, 4, 4), -3, np.int16), np.array([0, 1]), r"received dtype=int16"),
    ],
)
def test_npz_bad_arrays(
    tmp_path: Path, x_train: np.ndarray, y_train: np.ndarray, pattern: str
) -> None:
    path = save(
        tmp_path / "b.npz",
        x_train=x_train,
        y_train=y_train,
        x_test=np.zeros((1, 4, 4), np.uint8),
        y_test=np.array([0]),
    )
    with pytest.raises(DataFormatError, match=pattern):
        data.load("npz", path=path)


def test_npz_explicit_layout_and_missing_path(tmp_path: Path) -> None:
    x = np.zeros((2, 3, 3, 3), np.uint8)
    x[:, 0] = 7  # first axis after N is channels in NCHW
    path = save(
        tmp_path / "l.npz", x_train=x, y_train=np.array([0, 1]), x_test=x, y_test=np.array([0, 1])
    )
    assert int(data.load("npz", path=path, layout="NCHW").x_train[0, 0].min()) == 7
    assert int(data.load("npz", path=path, layout="NHWC").x_train[0, :, 0].min()) == 7
    with pytest.raises(ConfigError, match=r"expected option path=<file>"):
        data.load("npz")
