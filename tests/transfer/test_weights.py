"""Pretrained weights into a model: layouts, adaptation, the report, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

import cnnlab
from cnnlab.core.errors import CheckpointError, WeightsError
from cnnlab.transfer import adapt_first_conv, create_model, load_weights

SMALL = {"widths": [8, 16], "blocks": [1, 1]}


def saved(tmp_path: Path, name: str = "src", **kwargs: object) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(1)
    args = {"num_classes": 10, "in_channels": 1, **SMALL, **kwargs}
    model = cnnlab.create_model("resnet_mini", **args)
    with torch.no_grad():  # BN statistics away from their defaults, so a miss would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    folder = tmp_path / name
    cnnlab.save(model, folder, classes=[str(i) for i in range(10)], input_shape=(1, 16, 16))
    return folder, model


def test_same_architecture_loads_every_tensor(tmp_path: Path) -> None:
    folder, source = saved(tmp_path)
    model = create_model("resnet_mini", weights=folder, num_classes=10, in_channels=1, **SMALL)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(model.eval()(x), source.eval()(x))
    info = model.cnnlab_record.extra["pretrained"]  # type: ignore[union-attr]
    assert info["layout"] == "cnnlab" and info["loaded"] == len(source.state_dict())
    assert info["new"] == 0


def test_other_classes_get_a_new_head_and_the_report_says_so(tmp_path: Path) -> None:
    folder, source = saved(tmp_path)
    model = create_model("resnet_mini", num_classes=3, in_channels=1, **SMALL)
    report = load_weights(model, folder)
    assert set(report.new) == {"head.3.weight", "head.3.bias"}
    assert "source (10, 16), model (3, 16)" in report.new["head.3.weight"]
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    for key, value in body.items():
        assert torch.equal(model.state_dict()[key], value)
    assert "2 new" in report.summary()


def test_same_sized_head_is_new_when_the_classes_differ(tmp_path: Path) -> None:
    folder, source = saved(tmp_path)
    fresh = cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1, **SMALL)
    torch.manual_seed(5)
    model = create_model(
        "resnet_mini", weights=folder, classes=list("abcdefghij"), num_classes=10,
        in_channels=1, **SMALL,
    )  # fmt: skip
    assert not torch.equal(
        model.state_dict()["head.3.weight"], source.state_dict()["head.3.weight"]
    )
    assert fresh.state_dict()["head.3.weight"].shape == model.state_dict()["head.3.weight"].shape


@pytest.mark.parametrize(("source_c", "target_c"), [(1, 3), (3, 1), (3, 4)])
def test_first_conv_adapts_and_keeps_the_response_to_equal_channels(
    source_c: int, target_c: int
) -> None:
    torch.manual_seed(0)
    w = torch.randn(8, source_c, 3, 3)
    adapted = adapt_first_conv(w, target_c)
    assert adapted.shape == (8, target_c, 3, 3)
    grey = torch.randn(2, 1, 10, 10)
    want = F.conv2d(grey.expand(-1, source_c, -1, -1), w)
    got = F.conv2d(grey.expand(-1, target_c, -1, -1), adapted)
    # Exact for one channel either way; for 3 -> 4 the repeat (0,1,2,0) weighs channel 0
    # twice, so only the total is kept: compare the channel sums instead.
    if 1 in (source_c, target_c):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(adapted.sum(1), w[:, [0, 1, 2, 0]].sum(1) * 3 / 4)


def test_first_conv_of_other_channels_in_a_model(tmp_path: Path) -> None:
    folder, source = saved(tmp_path)
    model = create_model("resnet_mini", weights=folder, num_classes=10, in_channels=3, **SMALL)
    w = source.state_dict()["features.0.weight"]
    torch.testing.assert_close(model.state_dict()["features.0.weight"], w.repeat(1, 3, 1, 1) / 3)
    info = model.cnnlab_record.extra["pretrained"]  # type: ignore[union-attr]
    assert "1 input channels -> 3" in info["adapted"]["features.0.weight"]
    plain = cnnlab.create_model("resnet_mini", num_classes=10, in_channels=3, **SMALL)
    report = load_weights(plain, folder, first_conv="new")
    assert "features.0.weight" in report.new


def test_mismatched_shapes_name_every_tensor_and_the_option(tmp_path: Path) -> None:
    folder, _ = saved(tmp_path)
    model = cnnlab.create_model(
        "resnet_mini", num_classes=10, in_channels=1, widths=[8, 32], blocks=[1, 1]
    )
    with pytest.raises(WeightsError) as info:
        load_weights(model, folder)
    text = str(info.value)
    assert "features.5.conv1.weight: source (16, 8, 3, 3), model (32, 8, 3, 3)" in text
    assert "in_channels" in text and "num_classes" in text
    before = model.state_dict()["features.0.weight"].clone()
    assert torch.equal(model.state_dict()["features.0.weight"], before)  # nothing loaded


def test_classifier_body_becomes_a_segmenters_backbone(tmp_path: Path) -> None:
    folder, source = saved(tmp_path)
    seg = cnnlab.create_model(
        "fcn8s", num_classes=3, in_channels=1, backbone_args={"widths": [8, 16], "blocks": [1, 1]}
    )
    report = load_weights(seg, folder)
    assert report.layout == "backbone"
    for key, value in source.state_dict().items():
        if key.startswith("features."):
            assert torch.equal(seg.state_dict()["features.body." + key[9:]], value), key
    assert all(k.startswith("head.") for k in report.new)


def test_pth_and_safetensors_files_and_wrappers(tmp_path: Path) -> None:
    _, source = saved(tmp_path)
    state = source.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        model = cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1, **SMALL)
        report = load_weights(model, tmp_path / name)
        assert len(report.loaded) == len(state) and report.layout == "cnnlab"
        assert torch.equal(model.state_dict()["head.3.weight"], state["head.3.weight"])


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(MARKER),))


MARKER = Path("/tmp/cnnlab-pickle-ran")


def test_a_pickle_payload_never_runs(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    torch.save({"weight": Payload()}, tmp_path / "evil.pth")
    model = cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1, **SMALL)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_weights(model, tmp_path / "evil.pth")
    assert not MARKER.exists()


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    model = cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1, **SMALL)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(model, tmp_path / "missing")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"unknown weights format '\.npz'"):
        load_weights(model, tmp_path / "w.npz")
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="fit no layout of 'resnet_mini'"):
        load_weights(model, tmp_path / "other.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="expected a state dict"):
        load_weights(model, tmp_path / "list.pth")


def test_an_ensemble_folder_points_at_its_members(tmp_path: Path) -> None:
    members = [cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1, **SMALL)] * 2
    cnnlab.save(cnnlab.Ensemble(members), tmp_path / "ens", classes=list("abcdefghij"))
    model = cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1, **SMALL)
    with pytest.raises(WeightsError, match="member-0"):
        load_weights(model, tmp_path / "ens")


def test_the_saved_model_records_where_its_weights_came_from(tmp_path: Path) -> None:
    folder, _ = saved(tmp_path)
    model = create_model("resnet_mini", weights=folder, num_classes=4, in_channels=1, **SMALL)
    cnnlab.save(model, tmp_path / "tuned", classes=list("abcd"), input_shape=(1, 16, 16))
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["pretrained"]["source"] == str(folder)
    assert config["pretrained"]["new"] == 2
    again = cnnlab.load(tmp_path / "tuned")
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(again(x), model.eval()(x))
