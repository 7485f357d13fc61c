"""Networks written as specs: the seed networks' parameter counts equal the zoo's, shapes
are inferred, residual and concat blocks by reference, save/load through the record,
training from the CLI, and errors that point at the offending layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.app.cli import main as cli
from cnnlab.core.errors import ConfigError
from cnnlab.models import from_spec

SPECS = Path(__file__).parents[2] / "examples" / "specs"


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["keras_cifar", "keypoints_net"])
def test_seed_networks_as_specs_match_the_zoo(name: str) -> None:
    spec = from_spec(SPECS / f"{name}.yaml")
    zoo = cnnlab.create_model(name)
    assert n_params(spec) == n_params(zoo)  # keras_cifar: 1,250,858, as Keras prints
    assert [tuple(p.shape) for p in spec.parameters()] == [tuple(p.shape) for p in zoo.parameters()]
    # the same weights give the same outputs: the specs are the same networks
    spec.load_state_dict(dict(zip(spec.state_dict(), zoo.state_dict().values(), strict=True)))
    x = torch.randn(2, *spec.input_shape)
    torch.testing.assert_close(spec.eval()(x), zoo.eval()(x))


def residual_spec() -> dict:
    return {
        "input_shape": [1, 16, 16],
        "layers": [
            {"conv": {"out": 8, "kernel": 3, "padding": 1}, "name": "stem"},
            "relu",
            {"conv": {"out": 8, "kernel": 3, "padding": 1}},
            "bn",
            {"add": ["stem", -1], "name": "sum"},
            {"conv": {"out": 4, "kernel": 1}, "from": "stem"},
            {"concat": ["sum", -1]},
            {"ResidualBlock": {"out_channels": 12}},  # a cnnlab.layers class, in_channels inferred
        ],
    }


def test_residual_and_concat_by_reference_save_and_load(tmp_path: Path) -> None:
    model = from_spec(residual_spec(), num_classes=3).eval()
    layers = model.features.layers
    assert model.body_shape == (12, 16, 16)  # 8 (the sum) + 4 (the 1x1 branch)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        stem = layers[0](x)
        summed = layers[3](layers[2](torch.relu(stem))) + stem
        want = layers[7](torch.cat([summed, layers[5](stem)], 1))
        torch.testing.assert_close(model.forward_features(x), want)
        assert model(x).shape == (2, 3)
        again = cnnlab.load(cnnlab.save(model, tmp_path / "spec"))
        torch.testing.assert_close(again(x), model(x))


def test_errors_point_at_the_offending_layer() -> None:
    bad_add = {
        "input_shape": [1, 8, 8],
        "layers": [{"conv": 4, "name": "a"}, {"conv": 6}, {"add": ["a", -1]}],
    }
    with pytest.raises(
        ConfigError,
        match=r"layer 2 \(add\): cannot add outputs of shapes \[\(4, 6, 6\), \(6, 4, 4\)\]",
    ):
        from_spec(bad_add)
    too_small = {"input_shape": [1, 4, 4], "layers": ["relu", {"conv": {"out": 4, "kernel": 7}}]}
    with pytest.raises(ConfigError, match=r"layer 1 \(conv\): input shape \(1, 4, 4\)"):
        from_spec(too_small)
    with pytest.raises(ConfigError, match=r"layer 0 \(wobble\).*Expected a layer kind"):
        from_spec({"input_shape": [1, 4, 4], "layers": ["wobble"]})
    with pytest.raises(ConfigError, match=r"layer 1 \(add\).*Expected a name of an earlier layer"):
        from_spec({"input_shape": [1, 4, 4], "layers": ["relu", {"add": ["nowhere", -1]}]})
    with pytest.raises(ConfigError, match="non-empty 'layers'"):
        from_spec({"input_shape": [1, 4, 4]})
    with pytest.raises(ConfigError, match="spec keys"):
        from_spec({"layers": ["relu"], "laers": []})


def test_train_and_summary_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["summary", str(SPECS / "keras_cifar.yaml")]) == 0
    assert "1,250,858" in capsys.readouterr().out
    spec = tmp_path / "tiny.yaml"
    spec.write_text("layers:\n  - conv: {out: 8, padding: 1}\n  - relu\n  - maxpool: 2\n")
    code = cli(["train", "--model", str(spec), "--dataset", "digits", "--epochs", "1", "--runs-dir",
                str(tmp_path), "--name", "tiny", "--no-progress", "--no-report", "--threads", "1"])  # fmt: skip
    assert code == 0
    loaded = cnnlab.load(tmp_path / "tiny")
    assert cnnlab.core.records.require_record(loaded).architecture == "spec"
    assert loaded(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
