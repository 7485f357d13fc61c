"""Every registered model: the contract, a training step, and its published numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model, list_models
from cnnlab.core.errors import ConfigError, ShapeMismatchError, UnknownNameError
from cnnlab.core.records import record_of
from cnnlab.inspect.summary import summary
from cnnlab.models import Classifier, model_info, register_model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


BIG = 5_000_000  # parameters; above this, fewer and smaller optimizer steps keep the test fast


# Segmentation and keypoint-heatmap models have their own contract tests
# (tests/models/test_segmentation.py, test_keypoint_models.py); keypoints_net is a
# Classifier whose outputs are coordinates, so it keeps this contract.
@pytest.mark.parametrize("name", [*list_models(task="classify"), "keypoints_net"])
def test_contract_and_a_few_steps_lower_the_loss(name: str) -> None:
    info = model_info(name)
    # The smallest input that runs the whole network: ImageNet sizes are too slow here.
    # Images (C, H, W), signals (C, L) or token ids (L,).
    shape = info.test_input_shape or info.input_shape
    torch.manual_seed(0)
    channels = {"in_channels": shape[0]} if len(shape) > 1 else {}
    model = create_model(name, num_classes=7, **channels)  # odd class count on purpose
    assert isinstance(model, Classifier) and model.num_classes == 7
    big = n_params(model) > BIG
    batch = 4 if big else 6
    tokens = getattr(model, "input_dtype", torch.float32) == torch.int64
    x = torch.randint(0, 50, (batch, *shape)) if tokens else torch.randn(batch, *shape)
    y = torch.arange(batch) % 7
    model.eval()  # dropout off, so both paths compute the same thing
    features = model.forward_features(x)
    # (B, C', H', W'), (B, C', L') or (B, D); a spectrogram CNN turns waveforms into 2-D maps
    spectrogram = hasattr(model, "spectrogram")
    assert features.dim() == (4 if spectrogram else len(shape) + 1)
    assert torch.equal(model.forward_head(features), model(x))
    # Plain SGD on big models: Adam's two state tensors cost seconds per 100M weights.
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(model.parameters(), lr=0.01)
        if big
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    model.train()
    losses = []
    for _ in range(2 if big else 8):
        torch.manual_seed(1)  # same dropout masks each step: only the weights change
        loss = nn.functional.cross_entropy(model(x), y)
        aux = getattr(model, "auxiliary_loss", None)  # side heads train through it, as in fit
        if aux is not None:
            loss = loss + aux(nn.CrossEntropyLoss(), y)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        if not losses:
            # A BatchNorm shift that feeds (through a conv) into another BatchNorm is
            # cancelled by its mean subtraction: its exact gradient is 0 (MobileNet v2's
            # linear bottlenecks), so for those only the presence of a gradient is checked.
            cancelled = {
                f"{name}.bias"
                for name, m in model.named_modules()
                if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)
            }
            missing = [
                n
                for n, p in model.named_parameters()
                if p.grad is None or (n not in cancelled and not p.grad.any())
            ]
            assert not missing, f"no gradient for {missing}"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.reset_classifier(3)
    assert model(x).shape == (batch, 3)


def test_published_parameter_counts() -> None:
    # Keras' cifar10_cnn example prints "Total params: 1,250,858" for 32x32x3 input.
    assert n_params(create_model("keras_cifar", in_channels=3, num_classes=10)) == 1_250_858
    # LeNet-5 with full C3 connections and a linear output: 156 + 2,416 + 48,120 + 10,164 + 850.
    assert n_params(create_model("lenet5")) == 61_706


def test_lenet5_matches_table_14_1() -> None:
    # Seed 001, Table 14-1: maps and sizes of C1, S2, C3, S4, C5, F6 and the output.
    rows = summary(create_model("lenet5"), (1, 32, 32))
    shapes = [r.output_shape for r in rows if r.kind in {"Conv2d", "AvgPool2d", "Linear"}]
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1), (84,), (10,)]
    assert model_info("lenet5").input_shape == (1, 32, 32)
    # On 28x28 input C1 pads by 2, so every later size is unchanged.
    rows28 = summary(create_model("lenet5", input_size=28), (1, 28, 28))
    assert [r.output_shape for r in rows28] == [r.output_shape for r in rows]


def test_wrong_input_names_both_shapes() -> None:
    model = create_model("keras_cifar", in_channels=3)
    with pytest.raises(ShapeMismatchError, match=r"\(B, 3, 32, 32\).*\(1, 3, 28, 28\)"):
        model(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ShapeMismatchError, match=r"\(B, 1, H, W\).*\(1, 3, 28, 28\)"):
        create_model("resnet_mini")(torch.zeros(1, 3, 28, 28))


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_model("lenet5", input_shape=(1, 32, 32), paper="x", year=1)(lambda: nn.Identity())
    with pytest.raises(UnknownNameError, match=r"expected one of: .*lenet5"):
        create_model("lenet6")
    with pytest.raises(ConfigError, match="num_classes=0"):
        create_model("resnet_mini", num_classes=0)


def test_create_model_records_how_to_rebuild() -> None:
    model = create_model("resnet_mini", widths=(8, 16), blocks=(1, 2))
    record = record_of(model)
    assert record is not None
    assert (record.architecture, record.model_args, record.task) == (
        "resnet_mini",
        {"widths": [8, 16], "blocks": [1, 2]},
        "classify",
    )


def test_resnet_mini_global_pool_modes() -> None:
    x = torch.randn(2, 1, 28, 28)
    plain = create_model("resnet_mini", widths=(8, 16), blocks=(1, 1))
    # The default keeps the module (and so the state-dict keys) of earlier saved models.
    assert isinstance(plain.head[0], nn.AdaptiveAvgPool2d)
    for mode, width in (("max", 16), ("avgmax", 16), ("catavgmax", 32)):
        model = create_model("resnet_mini", widths=(8, 16), blocks=(1, 1), global_pool=mode)
        assert model.head[-1].in_features == width
        assert model(x).shape == (2, 10)
        assert set(model.state_dict()) == set(plain.state_dict())
    maps = plain.forward_features(x)
    torch.testing.assert_close(
        create_model("resnet_mini", widths=(8, 16), blocks=(1, 1), global_pool="max").head[0](maps),
        maps.amax(dim=(2, 3)),
    )
    with pytest.raises(ConfigError, match="received mode='sum'"):
        create_model("resnet_mini", global_pool="sum")
