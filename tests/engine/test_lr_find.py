"""The learning-rate range test: a sane suggestion, a plot, and the model left untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import Trainer
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.lr_find import centred_average, suggest
from cnnlab.runs.run import build_model


def test_suggestion_is_the_steepest_descent_of_a_known_curve() -> None:
    lrs = [10 ** (-6 + 7 * i / 99) for i in range(100)]
    # A loss flat until 1e-4, falling fastest (in log lr) at 1e-2, lowest at 1e-1, then up.
    logs = torch.tensor(lrs).log10()
    loss = (2 - torch.tanh((logs + 2) * 1.5)).tolist()
    loss = [
        v if lr < 0.1 else v + 5 * (torch.tensor(lr).log10().item() + 1)
        for v, lr in zip(loss, lrs, strict=True)
    ]
    steepest, min10 = suggest(lrs, loss)
    assert 0.007 < steepest < 0.015
    assert 0.008 < min10 < 0.012


def test_centred_average_does_not_lag() -> None:
    ramp = [float(i) for i in range(40)]
    assert centred_average(ramp)[10:30] == pytest.approx(ramp[10:30])


def test_the_sweep_leaves_the_model_and_rng_as_they_were(
    bars: ImageDataset, quick_config: TrainConfig, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    quick_config.freeze = "features.0"
    trainer = Trainer(build_model(quick_config, bars), quick_config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    loader_rng = trainer.generator.get_state()
    result = trainer.lr_find(bars, steps=60)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(trainer.generator.get_state(), loader_rng)
    assert all(p.requires_grad for p in trainer.model.parameters())  # the freeze was undone
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) >= 10
    # The known good rate of this problem: quick_config's 0.05 trains it to ~100%.
    assert 5e-3 <= result.suggestion <= 1.0, result.suggestion
    png = result.plot(tmp_path / "lr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_suggested_rate_trains(bars: ImageDataset, quick_config: TrainConfig) -> None:
    torch.manual_seed(0)
    suggestion = Trainer(build_model(quick_config, bars), quick_config).lr_find(bars, steps=60)
    quick_config.lr = suggestion.suggestion
    quick_config.fast_dev_run = False
    torch.manual_seed(0)
    trainer = Trainer(build_model(quick_config, bars), quick_config)
    trainer.fit(bars)
    assert trainer.evaluate(bars.x_test, bars.y_test)["accuracy"] > 0.9


def test_bad_ranges_are_refused(bars: ImageDataset, quick_config: TrainConfig) -> None:
    trainer = Trainer(build_model(quick_config, bars), quick_config)
    with pytest.raises(ConfigError, match="0 < start < end"):
        trainer.lr_find(bars, start=1.0, end=0.1)
    with pytest.raises(ConfigError, match="steps >= 5"):
        trainer.lr_find(bars, steps=2)


def test_cli_lr_find_writes_a_plot_and_json(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cnnlab.app.cli", "lr-find", "--dataset", "digits", "--steps", "30",
         "--batch-size", "64", "--model-args", "{widths: [8, 16], blocks: [1, 1]}",
         "-o", str(tmp_path / "lr.png"), "--json", str(tmp_path / "lr.json")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "suggested lr" in out and (tmp_path / "lr.png").exists()
    sweep = json.loads((tmp_path / "lr.json").read_text())
    assert sweep["rule"].startswith("steepest") and len(sweep["lrs"]) >= 10
