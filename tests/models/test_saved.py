"""Saved models: config.json + model.safetensors, rebuilt without unpickling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.core.errors import CheckpointError, ConfigError
from cnnlab.core.records import record_of
from cnnlab.engine.predictor import probabilities


def test_predictions_survive_a_reload(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet_mini", widths=[8, 16], blocks=[1, 1], num_classes=3)
    model.train()
    model(torch.randn(8, 1, 12, 12))  # move BatchNorm statistics away from their init
    folder = cnnlab.save(
        model, tmp_path / "m", classes=["a", "b", "c"], input_shape=(1, 12, 12),
        mean=[0.3], std=[0.2],
    )  # fmt: skip
    record = record_of(model)  # save() keeps what it wrote in the model's record
    assert record is not None and (record.mean, record.std) == ([0.3], [0.2])
    images = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    before = probabilities(model, images)
    loaded = cnnlab.load(folder)
    assert not loaded.training
    assert torch.equal(probabilities(loaded, images), before)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet_mini" and config["classes"] == ["a", "b", "c"]
    assert config["cnnlab_version"] == cnnlab.__version__


def test_model_without_registry_record_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="create_model"):
        cnnlab.save(torch.nn.Linear(2, 2), tmp_path / "m")


def test_damaged_saved_models_are_typed_errors(tmp_path: Path) -> None:
    folder = cnnlab.save(cnnlab.create_model("lenet5"), tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        cnnlab.load(folder)
    with pytest.raises(CheckpointError, match="not found"):
        cnnlab.load(tmp_path / "nothing")
    # Weights that do not fit the architecture the config names.
    cnnlab.save(cnnlab.create_model("lenet5"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "resnet_mini"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit resnet_mini"):
        cnnlab.load(folder)


def test_a_model_trained_with_tta_predicts_with_tta(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet_mini", widths=[8, 16], blocks=[1, 1], num_classes=3)
    folder = cnnlab.save(model, tmp_path / "m", extra={"tta": True})
    loaded = cnnlab.load(folder)
    images = torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8)
    with_tta = probabilities(loaded, images)
    record = record_of(loaded)
    assert record is not None and record.tta is True
    record.tta = False
    plain, mirrored = probabilities(loaded, images), probabilities(loaded, images.flip(3))
    assert torch.allclose(with_tta, (plain + mirrored) / 2, atol=1e-6)
    assert not torch.allclose(with_tta, plain, atol=1e-4)


def test_frozen_parameters_come_back_frozen(tmp_path: Path) -> None:
    model = cnnlab.create_model("resnet_mini", widths=[8, 16], blocks=[1, 1], num_classes=3)
    model.features[0].weight.requires_grad_(False)  # as a whitened first layer is
    folder = cnnlab.save(model, tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["frozen"] == ["features.0.weight"]
    loaded = cnnlab.load(folder)
    flags = {name: p.requires_grad for name, p in loaded.named_parameters()}
    assert flags == {name: p.requires_grad for name, p in model.named_parameters()}
    assert not flags["features.0.weight"] and sum(flags.values()) == len(flags) - 1
    # Nothing frozen: no key, and every parameter trainable after loading.
    plain = cnnlab.save(cnnlab.create_model("lenet5"), tmp_path / "plain")
    assert "frozen" not in json.loads((plain / "config.json").read_text())
    assert all(p.requires_grad for p in cnnlab.load(plain).parameters())


def test_a_frozen_name_the_model_lacks_is_a_checkpoint_error(tmp_path: Path) -> None:
    folder = cnnlab.save(cnnlab.create_model("lenet5"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "frozen": ["nope.weight"]}))
    with pytest.raises(CheckpointError, match=r"'frozen' lists a parameter.*nope\.weight"):
        cnnlab.load(folder)
