"""Residual, highway, dense, inception, squeeze-excitation and inverted-residual blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers import (
    DenseBlock,
    HighwayConv2d,
    InceptionModule,
    InvertedResidual,
    ResidualBlock,
    SqueezeExcitation,
    Transition,
)


def test_residual_shortcut_kinds() -> None:
    assert isinstance(ResidualBlock(4, 4).shortcut, nn.Identity)
    assert isinstance(ResidualBlock(4, 8).shortcut, nn.Sequential)
    assert isinstance(ResidualBlock(4, 4, stride=2).shortcut, nn.Sequential)


@pytest.mark.parametrize(("in_channels", "out_channels", "stride"), [(4, 4, 1), (4, 6, 2)])
def test_residual_adds_shortcut(in_channels: int, out_channels: int, stride: int) -> None:
    torch.manual_seed(0)
    block = ResidualBlock(in_channels, out_channels, stride).eval()
    x = torch.randn(2, in_channels, 6, 6)
    with torch.no_grad():
        block.bn2.weight.zero_()  # type: ignore[operator]  # the residual branch F(x) now outputs exactly 0
    torch.testing.assert_close(block(x), torch.relu(block.shortcut(x)))


def test_residual_accepts_norm_and_act_layers() -> None:
    block = ResidualBlock(4, 4, norm_layer=lambda c: nn.GroupNorm(2, c), act_layer=nn.GELU)
    assert isinstance(block.bn1, nn.GroupNorm) and isinstance(block.act2, nn.GELU)
    assert block(torch.randn(1, 4, 5, 5)).shape == (1, 4, 5, 5)


def force_gate(layer: HighwayConv2d, bias: float) -> None:
    with torch.no_grad():
        layer.gate.conv.weight.zero_()
        layer.gate.conv.bias.fill_(bias)  # type: ignore[union-attr]


def test_highway_gate_closed_carries_x() -> None:
    torch.manual_seed(0)
    layer = HighwayConv2d(3)
    force_gate(layer, -1e4)  # T = sigmoid(-1e4) = 0
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(layer(x), x)


def test_highway_gate_open_transforms() -> None:
    torch.manual_seed(0)
    layer = HighwayConv2d(3)
    force_gate(layer, 1e4)  # T = 1
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(layer(x), torch.relu(layer.transform(x)))


def test_highway_starts_carry_biased() -> None:
    layer = HighwayConv2d(4, gate_bias=-2.0)
    assert torch.equal(layer.gate.conv.bias, torch.full((4,), -2.0))  # type: ignore[arg-type]
    x = torch.randn(1, 4, 6, 6)
    gate = torch.sigmoid(layer.gate(x))
    assert gate.mean() < 0.3  # mostly carry at init


def test_highway_gradcheck() -> None:
    torch.manual_seed(0)
    layer = HighwayConv2d(2, act_layer=nn.Tanh).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize(("num_layers", "in_channels", "growth_rate"), [(1, 3, 2), (4, 8, 12)])
def test_dense_block_channels_grow_by_k(
    num_layers: int, in_channels: int, growth_rate: int
) -> None:
    block = DenseBlock(num_layers, in_channels, growth_rate)
    x = torch.randn(1, in_channels, 4, 4)
    y = block(x)
    assert (
        y.shape == (1, in_channels + num_layers * growth_rate, 4, 4)
        and block.out_channels == y.shape[1]
    )
    torch.testing.assert_close(y[:, :in_channels], x)  # the input is passed on unchanged


def test_dense_bottleneck_width_is_4k() -> None:
    layer = DenseBlock(1, 6, 5).layers[0]
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (6, 20, (1, 1)),
        (20, 5, (3, 3)),
    ]


def test_transition_halves_spatial() -> None:
    assert Transition(8, 4)(torch.randn(1, 8, 6, 7)).shape == (1, 4, 3, 3)


@pytest.mark.parametrize("naive", [False, True])
def test_inception_channels_are_sum_of_branches(naive: bool) -> None:
    module = InceptionModule(6, 4, 3, 5, 2, 3, 2, naive=naive)
    x = torch.randn(1, 6, 7, 7)
    branches = [module.branch1(x), module.branch2(x), module.branch3(x), module.branch4(x)]
    assert [b.shape[1] for b in branches] == [4, 5, 3, 6 if naive else 2]
    y = module(x)
    assert y.shape == (1, module.out_channels, 7, 7) and module.out_channels == sum(
        b.shape[1] for b in branches
    )
    torch.testing.assert_close(y, torch.cat(branches, dim=1))


def test_inception_reductions_cut_params() -> None:
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    # GoogLeNet 3a: 192 -> 64 + 128 + 32 + 32 = 256 channels.
    reduced = InceptionModule(192, 64, 96, 128, 16, 32, 32)
    naive = InceptionModule(192, 64, 96, 128, 16, 32, 32, naive=True)
    assert reduced.out_channels == 256
    assert count(reduced) < count(naive) / 2


def test_squeeze_excitation_scales_by_gate() -> None:
    torch.manual_seed(0)
    se = SqueezeExcitation(8, reduction=4)
    x = torch.randn(2, 8, 5, 5)
    gate = se.gate(x)
    assert gate.shape == (2, 8, 1, 1)
    assert torch.all((gate > 0) & (gate < 1))
    torch.testing.assert_close(se(x), x * gate)
    # The gate is a function of the channel means only (the squeeze).
    manual = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean(dim=(2, 3), keepdim=True)))))
    torch.testing.assert_close(gate, manual)


def test_squeeze_excitation_gradcheck() -> None:
    torch.manual_seed(0)
    se = SqueezeExcitation(4, reduction=2).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(se, (x,))


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "stride", "residual"),
    [(4, 4, 1, True), (4, 6, 1, False), (4, 4, 2, False)],
)
def test_inverted_residual_only_when_shapes_match(
    in_channels: int, out_channels: int, stride: int, residual: bool
) -> None:
    torch.manual_seed(0)
    block = InvertedResidual(in_channels, out_channels, stride, expand_ratio=3).eval()
    assert block.use_residual is residual
    with torch.no_grad():
        block.conv[-1].weight.zero_()  # type: ignore[operator]  # last BN: the conv branch outputs 0
    x = torch.randn(1, in_channels, 6, 6)
    y = block(x)
    expected = x if residual else torch.zeros(1, out_channels, 6 // stride, 6 // stride)
    torch.testing.assert_close(y, expected)


def test_inverted_residual_uses_relu6_and_linear_bottleneck() -> None:
    block = InvertedResidual(4, 4, 1, expand_ratio=6)
    kinds = [type(m) for m in block.conv]
    assert kinds.count(nn.ReLU6) == 2 and kinds[-1] is nn.BatchNorm2d
    depthwise = block.conv[3]
    assert isinstance(depthwise, nn.Conv2d) and depthwise.groups == 24
    with pytest.raises(ConfigError, match="Expected stride in \\(1, 2\\), received stride=3"):
        InvertedResidual(4, 4, 3, 6)
