"""The data package's public surface: names, options, describe, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import data
from cnnlab.core.errors import ConfigError, UnknownNameError
from cnnlab.data.__main__ import main

NAMES = [
    "bearing-synthetic", "cifar10", "cifar100", "cwru", "detection-folder", "digits", "faces",
    "facial-keypoints", "fashion-mnist", "folder", "fsdd", "fsdd-mulaw", "mnist", "mnist-5k", "mr", "npz",
    "nuclei", "scenes",
]  # fmt: skip


def test_list_datasets() -> None:
    assert data.list_datasets() == NAMES


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as caught:
        data.load("imagenet")
    assert caught.value.valid == NAMES
    assert (
        "unknown dataset 'imagenet'; expected one of: bearing-synthetic, cifar10, cifar100, cwru"
        in str(caught.value)
    )
    with pytest.raises(UnknownNameError):
        data.describe("fashion_mnist")


def test_unknown_option_lists_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) size; accepted: path, image_size"):
        data.load("folder", size=3)
    with pytest.raises(ConfigError, match="accepted: none"):
        data.load("mnist", path="x")


@pytest.mark.parametrize("name", NAMES)
def test_describe_has_the_table_columns(name: str) -> None:
    info = data.describe(name)
    assert set(info) == {
        "name",
        "title",
        "num_classes",
        "input_shape",
        "train_size",
        "test_size",
        "task",
        "source",
    }
    assert info["name"] == name and info["source"]
    if name in ("faces", "facial-keypoints"):  # 15 keypoints of 96x96 faces
        assert info["num_classes"] == 15 and info["input_shape"] == (1, 96, 96)
        assert info["task"] == "keypoints"
    if name == "nuclei":
        assert info["num_classes"] == 2 and info["task"] == "segment"
    user_files = ("folder", "npz", "detection-folder", "facial-keypoints")  # known on loading
    if name == "detection-folder":
        assert info["task"] == "detect"
    signals = {  # name -> (classes, one input's shape): signals (C, L), token ids (L,)
        "cwru": (10, (1, 2048)), "bearing-synthetic": (4, (1, 2048)), "fsdd": (10, (1, 8000)),
        "fsdd-mulaw": (10, (4001,)), "mr": (2, (56,)),
    }  # fmt: skip
    if name in signals:
        assert (info["num_classes"], info["input_shape"]) == signals[name]
    elif name not in (*user_files, "faces", "nuclei"):
        assert info["num_classes"] in (10, 100)
        assert len(info["input_shape"]) == 3
    if name not in user_files:  # sizes known without loading
        assert info["train_size"] > info["test_size"] > 0


def test_describe_matches_what_digits_loads() -> None:
    info, ds = data.describe("digits"), data.load("digits")
    assert info["input_shape"] == ds.input_shape and info["num_classes"] == ds.num_classes
    assert (info["train_size"], info["test_size"]) == (len(ds.x_train), len(ds.x_test))


def test_fetch_and_find_local_refuse_local_kinds() -> None:
    with pytest.raises(ConfigError, match="has no files to fetch"):
        data.fetch("digits")
    with pytest.raises(ConfigError, match="has no files to fetch"):
        data.find_local("npz")


def test_cli_check_without_copy_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "cifar10", "--cache-dir", str(tmp_path), "--no-system-dirs"]) == 1
    assert "no verified local copy" in capsys.readouterr().err
    assert main(["check", "digits"]) == 0
    assert (
        main(
            [
                "fetch",
                "cifar100",
                "--cache-dir",
                str(tmp_path),
                "--no-system-dirs",
                "--mirror",
                "http://127.0.0.1:9/",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "error: no local copy of dataset 'cifar100'" in err and "http://127.0.0.1:9/" in err
    assert main(["list"]) == 0
    assert capsys.readouterr().out.count("\n") == len(NAMES)


def test_module_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CNNLAB_DATA": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.data", "check", "mnist", "--no-system-dirs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "mnist: no verified local copy" in result.stderr
