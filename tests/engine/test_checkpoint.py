"""Checkpoint files: round trip of nested state, atomic writes, typed errors on damage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cnnlab.core.errors import CheckpointError
from cnnlab.core.io import atomic_open, load_tensors, save_tensors
from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_of_nested_state(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "tuple": (1, 2.5, "x"),
        "inf": math.inf,
        "none": None,
        "int_keys": {0: "a", 7: [1, 2]},
        "bf16": torch.ones(2, dtype=torch.bfloat16),
    }
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert torch.equal(back["rng"], state["rng"])
    assert back["tuple"] == (1, 2.5, "x") and back["inf"] == math.inf and back["none"] is None
    assert back["int_keys"] == {0: "a", 7: [1, 2]}
    assert back["bf16"].dtype == torch.bfloat16
    opt2 = torch.optim.Adam(model.parameters())
    opt2.load_state_dict(back["optimizer"])  # the structure torch expects, int keys included
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_truncated_file_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.randn(100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.safetensors.*truncated"):
        load_checkpoint(path)


def test_tampered_data_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.zeros(100)})
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the tensor bytes: the header still parses
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(path)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    save_tensors(path, {"w": torch.zeros(1)}, {"format": "something else"})
    with pytest.raises(CheckpointError, match="expected format"):
        load_checkpoint(path)


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_tensors(path, {"w": torch.ones(3)}, {})
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"half")
        raise RuntimeError("crash mid-write")
    tensors, _ = load_tensors(path)
    assert torch.equal(tensors["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
