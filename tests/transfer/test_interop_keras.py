"""cnnlab's ResNet-50, VGG-16 and MobileNetV2, given Keras Applications' weights through
``from_keras``, give Keras's logits.

The oracle is Keras itself, run in its own venv by ``peers/keras_fixtures.py`` (weight
files, inputs and logits on disk); set ``CNNLAB_INTEROP_DIR`` to the folder above its
``keras/`` output to run these tests::

    .venv-keras/bin/python tests/transfer/peers/keras_fixtures.py /tmp/interop/keras
    CNNLAB_INTEROP_DIR=/tmp/interop .venv/bin/python -m pytest tests/transfer/test_interop_keras.py
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from cnnlab.models import create_model
from cnnlab.transfer.layout_keras import (
    KERAS_ARCHITECTURES,
    cnnlab_architecture,
    from_keras,
    keras_model_args,
    read_keras_weights,
)

pytestmark = pytest.mark.interop

ATOL = RTOL = 1e-4
# The logits must spread far wider than the tolerance, or a wrong mapping could pass.
MIN_SPREAD = 100 * ATOL
GENERATE = ".venv-keras/bin/python tests/transfer/peers/keras_fixtures.py DIR/keras"


def _load_peer() -> ModuleType:
    """The fixture script, for its table; it imports Keras only when it runs."""
    path = Path(__file__).parent / "peers" / "keras_fixtures.py"
    spec = importlib.util.spec_from_file_location("keras_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PEER = _load_peer()
# (cnnlab name, file suffix): every model's .weights.h5, plus the extra formats.
CASES = [
    (name, suffix)
    for name, (*_, formats) in PEER.ARCHITECTURES.items()
    for suffix in (".weights.h5", *formats)
]


@pytest.fixture(scope="module")
def fixtures_dir() -> Path:
    """``$CNNLAB_INTEROP_DIR/keras``; the tests skip, saying how to make it, without it."""
    root = os.environ.get("CNNLAB_INTEROP_DIR")
    if not root:
        pytest.skip(f"CNNLAB_INTEROP_DIR is not set; make Keras's outputs with {GENERATE}")
    folder = Path(root) / "keras"
    if not any(folder.glob("*.logits.npy")):
        pytest.skip(f"no Keras outputs in {folder}; make them with {GENERATE}")
    return folder


def load_fixture(folder: Path, name: str, suffix: str) -> tuple[Path, torch.Tensor, np.ndarray]:
    """Keras's weight file, the input (NCHW) and the logits for ``name``; skips when absent."""
    files = [
        folder / f"{name}{suffix}",
        folder / f"{name}.input.npy",
        folder / f"{name}.logits.npy",
    ]
    if not all(f.is_file() for f in files):
        pytest.skip(f"no {', '.join(f.name for f in files)} in {folder}; make them with {GENERATE}")
    x = torch.from_numpy(np.load(files[1])).permute(0, 3, 1, 2)  # NHWC -> NCHW
    return files[0], x, np.load(files[2])


def cnnlab_logits(
    name: str, path: Path, x: torch.Tensor, num_classes: int, **options: object
) -> np.ndarray:
    """cnnlab's ``name`` loaded (strictly) from the Keras file at ``path``, run in eval mode."""
    weights = read_keras_weights(path)
    model = create_model(name, num_classes=num_classes, in_channels=3, **options)
    model.load_state_dict(from_keras(name, weights, model.state_dict()), strict=True)
    model.eval()
    with torch.no_grad():
        return model(x).numpy()


def test_fixtures_cover_every_mapped_architecture() -> None:
    assert set(PEER.ARCHITECTURES) == set(KERAS_ARCHITECTURES.values())
    assert {keras for keras, *_ in PEER.ARCHITECTURES.values()} == set(KERAS_ARCHITECTURES)


@pytest.mark.parametrize(("name", "suffix"), CASES)
def test_keras_weights_give_keras_logits(fixtures_dir: Path, name: str, suffix: str) -> None:
    path, x, expected = load_fixture(fixtures_dir, name, suffix)
    assert cnnlab_architecture(read_keras_weights(path)) == name
    logits = cnnlab_logits(name, path, x, expected.shape[1], **keras_model_args(name))
    assert expected.std() > MIN_SPREAD, f"Keras's logits barely vary: {expected}"
    diff = float(np.abs(logits - expected).max())
    np.testing.assert_allclose(logits, expected, atol=ATOL, rtol=RTOL, err_msg=f"max |diff| {diff}")


# Options that change eval-mode logits measurably on these fixtures; ResNet's bn_eps
# (1.001e-5 against 1e-5) and every bn_momentum (train mode only) do not.
TELLING_OPTIONS = [("resnet50", "stride_in_1x1"), ("mobilenet_v2", "padding")]


@pytest.mark.parametrize(("name", "option"), TELLING_OPTIONS)
def test_keras_model_args_are_needed(fixtures_dir: Path, name: str, option: str) -> None:
    """The oracle tells the options apart: without one, the logits leave the tolerance."""
    path, x, expected = load_fixture(fixtures_dir, name, ".weights.h5")
    options = keras_model_args(name)
    del options[option]
    logits = cnnlab_logits(name, path, x, expected.shape[1], **options)
    assert np.abs(logits - expected).max() > 100 * ATOL
