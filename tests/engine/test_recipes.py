"""Named recipes: valid configs, and the order recipe < YAML file < flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cnnlab.app.cli import main
from cnnlab.core.errors import ConfigError, UnknownNameError
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.recipes import RECIPES, list_recipes, recipe_values


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_is_a_valid_config(name: str) -> None:
    config = TrainConfig.from_recipe(name)
    assert config.name == name
    for key, value in RECIPES[name].values.items():
        assert getattr(config, key) == value


def test_recipe_values_are_copies() -> None:
    values = recipe_values("fmnist-best")
    values["model_args"]["widths"] = [1]
    assert RECIPES["fmnist-best"].values["model_args"]["widths"] != [1]


def test_from_recipe_takes_any_field_as_an_override_including_name() -> None:
    config = TrainConfig.from_recipe("fmnist-fast", name="mine", epochs=3, time_budget=None)
    assert (config.name, config.epochs, config.time_budget) == ("mine", 3, None)
    assert config.model == RECIPES["fmnist-fast"].values["model"]


def test_epochs_beside_a_recipes_budget_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"epochs=3 and time_budget='5m'.*none"):
        TrainConfig.from_recipe("fmnist-fast", epochs=3)


def test_unknown_recipe_names_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="fmnist-fast"):
        TrainConfig.from_recipe("fmnist-fastest")


def test_cli_applies_recipe_then_yaml_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[TrainConfig] = []

    def fake_run(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
        seen.append(config)
        return {"test_accuracy": 0.5, "test_images": 1, "train_seconds": 1.0, "epochs": 1,
                "run_dir": str(config.run_dir)}  # fmt: skip

    monkeypatch.setattr("cnnlab.runs.run_training", fake_run)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("epochs: 3\ntime_budget: none\nlr: 0.05\n")
    args = ["train", "--recipe", "fmnist-fast", "--config", str(yaml_file), "--lr", "0.2"]
    assert main(args) == 0
    config = seen[-1]
    assert config.augment == RECIPES["fmnist-fast"].values["augment"]  # from the recipe
    assert config.epochs == 3  # the YAML file beats the recipe
    assert config.lr == 0.2  # a flag beats both
    assert main(["train", "--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def test_recipes_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in list_recipes():
        assert name in out
