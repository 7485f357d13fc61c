"""The seeds' own nets, SE-ResNet, MobileNet v1/v2, EfficientNet-B0 and the highway CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.layers.blocks import HighwayConv2d
from cnnlab.models import efficientnet, highway, mobilenet, seed_nets, senet
from cnnlab.models.registry import create_model, model_info

MODULES = (efficientnet, highway, mobilenet, seed_nets, senet)  # imported to register them
NAMES = [
    "keypoints_net",
    "mnist_net",
    "seresnet50",
    "mobilenet_v1",
    "mobilenet_v2",
    "efficientnet_b0",
    "highway_cnn",
]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(name: str, **kwargs: object) -> nn.Module:
    # On the meta device no memory is allocated: building SE-ResNet-50 takes milliseconds.
    with torch.device("meta"):
        return create_model(name, **kwargs)


# ImageNet, 3 channels, 1000 classes.
PUBLISHED_COUNTS = {
    # osmr/imgclsmob (SE-ResNet-50, also Cadene/pretrained-models.pytorch's se_resnet50);
    # Hu et al. 2018, Table 1, round it to 28.1M.
    "seresnet50": 28_088_024,
    # Keras Applications MobileNet (alpha 1.0, 224): "Trainable params: 4,231,976"; also
    # osmr/imgclsmob mobilenet_w1. Howard et al. 2017, Table 8, round it to 4.2M.
    "mobilenet_v1": 4_231_976,
    # torchvision.models MobileNet_V2_Weights.IMAGENET1K_V1 "num_params".
    "mobilenet_v2": 3_504_872,
    # torchvision.models EfficientNet_B0_Weights.IMAGENET1K_V1 "num_params".
    "efficientnet_b0": 5_288_548,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_COUNTS))
def test_imagenet_counts_match_the_published_ones(name: str) -> None:
    assert n_params(build_on_meta(name)) == PUBLISHED_COUNTS[name]


def test_keypoints_net_matches_seed_003() -> None:
    model = build_on_meta("keypoints_net")
    features = model.forward_features(torch.empty(1, 1, 96, 96, device="meta"))
    assert tuple(features.shape[1:]) == (128, 11, 11)  # "outputs a 128x11x11 volume"
    # (weights + biases) per layer:
    # conv1 3x3x1x32 + 32 = 320; conv2 2x2x32x64 + 64 = 8,256; conv3 2x2x64x128 + 128 = 32,896;
    # hidden4 128*11*11*1000 + 1000 = 15,489,000; hidden5 1000*1000 + 1000 = 1,001,000;
    # output 1000*30 + 30 = 30,030. The seed says "over 8 million parameters".
    expected = 320 + 8_256 + 32_896 + 15_489_000 + 1_001_000 + 30_030
    assert n_params(model) == expected == 16_561_502
    assert model.num_classes == 30


def test_mnist_net_matches_seed_004() -> None:
    model = build_on_meta("mnist_net")
    # The seed's "sizes of signals": 28·28·9 after the first conv, 14·14·16 after the second.
    x, sizes = torch.empty(1, 1, 28, 28, device="meta"), []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            sizes.append(x[0].numel())
    assert sizes == [7056, 3136]
    assert tuple(x.shape[1:]) == (16, 7, 7)
    # Seed 004 counts weights ignoring biases: 5·5·9 + 5·5·16 + 7·7·16·10 = 225 + 3600 + 7840.
    # Its middle term is written 5·5·16 but its value, 3600, is 5·5·9·16: each second-layer
    # filter sees all 9 channels ("each unit looks at all channels of the previous layer").
    weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    assert weights == 5 * 5 * 1 * 9 + 5 * 5 * 9 * 16 + 7 * 7 * 16 * 10 == 11_665
    # Our true count adds one bias per output: 9 + 16 + 10.
    assert n_params(model) == 11_665 + 35 == 11_700


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_at_the_test_input(name: str) -> None:
    info = model_info(name)
    c, h, w = info.test_input_shape or info.input_shape
    torch.manual_seed(0)
    model = create_model(name, in_channels=c, num_classes=5)
    out = model(torch.randn(2, c, h, w))
    assert out.shape == (2, 5)
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    # A BN bias whose output reaches the next train-mode BN through linear layers only
    # (MobileNet's linear bottlenecks) has a zero gradient by construction: BN removes a
    # per-channel shift. Every other parameter must get a non-zero gradient.
    bn_biases = {f"{n}.bias" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    zero = [n for n, p in model.named_parameters() if n not in bn_biases and not p.grad.any()]
    assert not zero, f"zero gradient for {zero}"
    model.reset_classifier(3)
    assert model.num_classes == 3
    assert model(torch.randn(2, c, h, w)).shape == (2, 3)


@pytest.mark.parametrize("name", [n for n in NAMES if not model_info(n).fixed_input])
def test_below_minimum_input_names_the_minimum(name: str) -> None:
    c, h, _ = model_info(name).test_input_shape or model_info(name).input_shape
    model = build_on_meta(name)
    model.forward_features(torch.empty(2, c, h, h, device="meta"))  # the minimum passes
    with pytest.raises(ShapeMismatchError, match=rf"at least {h}x{h}.*\(1, {c}, {h - 1}, {h}\)"):
        model(torch.empty(1, c, h - 1, h, device="meta"))


@pytest.mark.parametrize(("name", "c", "size"), [("keypoints_net", 1, 96), ("mnist_net", 1, 28)])
def test_fixed_input_models_name_both_shapes(name: str, c: int, size: int) -> None:
    model = build_on_meta(name)
    bad = (1, c, size + 4, size + 4)
    pattern = rf"\(B, {c}, {size}, {size}\).*\(1, {c}, {size + 4}, {size + 4}\)"
    with pytest.raises(ShapeMismatchError, match=pattern):
        model(torch.empty(*bad, device="meta"))
    with pytest.raises(ShapeMismatchError, match="at least"):
        create_model(name, input_size=3)


def test_highway_layers_mostly_carry_their_input_at_init() -> None:
    torch.manual_seed(0)
    model = create_model("highway_cnn")
    gates: list[torch.Tensor] = []
    for layer in model.modules():
        if isinstance(layer, HighwayConv2d):
            layer.register_forward_hook(
                lambda m, args, _: gates.append(torch.sigmoid(m.gate(args[0])))
            )
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert len(gates) == 6  # 3 stages x 2 layers
    # T is the share of H(x); below 0.5 the carried input (1 - T)·x dominates.
    assert all(t.mean() < 0.5 for t in gates)
