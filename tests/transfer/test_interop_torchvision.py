"""cnnlab's zoo models, given torchvision's weights through ``from_torchvision``, give
torchvision's logits.

The oracle is torchvision itself, run in its own venv by ``peers/torchvision_fixtures.py``
(weights and logits on disk); set ``CNNLAB_INTEROP_DIR`` to the folder above its
``torchvision/`` output to run these tests::

    .venv-torchvision/bin/python tests/transfer/peers/torchvision_fixtures.py runs/interop/torchvision  (or: make interop)
    CNNLAB_INTEROP_DIR=/tmp/interop .venv/bin/python -m pytest tests/transfer/test_interop_torchvision.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cnnlab.models import create_model
from cnnlab.transfer.layout_torchvision import (
    TORCHVISION_ARCHITECTURES,
    from_torchvision,
    is_torchvision_layout,
)

pytestmark = pytest.mark.interop

ATOL = RTOL = 1e-4
# The logits must spread far wider than the tolerance, or a wrong mapping could pass.
MIN_SPREAD = 100 * ATOL
GENERATE = "make interop (or .venv-torchvision/bin/python tests/transfer/peers/torchvision_fixtures.py DIR/torchvision)"


@pytest.fixture(scope="module")
def fixtures_dir() -> Path:
    """``$CNNLAB_INTEROP_DIR/torchvision``; the tests skip, saying how to make it, without it."""
    root = os.environ.get("CNNLAB_INTEROP_DIR")
    if not root:
        pytest.skip(f"CNNLAB_INTEROP_DIR is not set; make torchvision's outputs with {GENERATE}")
    folder = Path(root) / "torchvision"
    if not any(folder.glob("*.io.pt")):
        pytest.skip(f"no torchvision outputs in {folder}; make them with {GENERATE}")
    return folder


def load_fixture(
    folder: Path, name: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """torchvision's state dict, input and logits for ``name``; skips when not generated."""
    weights, io = folder / f"{name}.pth", folder / f"{name}.io.pt"
    if not (weights.is_file() and io.is_file()):
        pytest.skip(f"no {weights.name} / {io.name} in {folder}; make them with {GENERATE}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    record = torch.load(io, map_location="cpu", weights_only=True)
    return state, record["input"], record["logits"]


@pytest.mark.parametrize("name", TORCHVISION_ARCHITECTURES)
def test_torchvision_weights_give_torchvision_logits(fixtures_dir: Path, name: str) -> None:
    state, x, expected = load_fixture(fixtures_dir, name)
    assert is_torchvision_layout(name, state)
    model = create_model(name, num_classes=expected.shape[1], in_channels=3)
    assert not is_torchvision_layout(name, model.state_dict())
    mapped = from_torchvision(name, state, model.state_dict())
    # safetensors files list keys alphabetically: the mapping must not depend on the order.
    resorted = from_torchvision(name, dict(sorted(state.items())), model.state_dict())
    assert all(resorted[key] is tensor for key, tensor in mapped.items())
    model.load_state_dict(mapped, strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert expected.std() > MIN_SPREAD, f"torchvision's logits barely vary: {expected}"
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=RTOL)


def test_safetensors_copy_maps_like_the_pth(fixtures_dir: Path) -> None:
    path = fixtures_dir / "resnet18.safetensors"
    if not path.is_file():
        pytest.skip(f"no {path}: the fixtures' venv has no safetensors")
    from safetensors.torch import load_file

    state, x, expected = load_fixture(fixtures_dir, "resnet18")
    copy = load_file(path)
    model = create_model("resnet18", num_classes=expected.shape[1], in_channels=3)
    mapped = from_torchvision("resnet18", copy, model.state_dict())
    model.load_state_dict(mapped, strict=True)
    assert mapped.keys() == from_torchvision("resnet18", state, model.state_dict()).keys()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected, atol=ATOL, rtol=RTOL)
