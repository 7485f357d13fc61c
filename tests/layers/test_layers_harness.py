"""One harness for every layer: output shape, parameter count, and a gradient to every parameter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from cnnlab import layers as L

# (name, factory, input shape, expected output shape, expected parameter count).
# Parameter counts are worked out by hand in the comments, not read back from the layer.
CASES: list[tuple[str, Callable[[], nn.Module], tuple[int, ...], tuple[int, ...], int]] = [
    # (3·3·3 + 1)·4
    (
        "conv2d_same_s2",
        lambda: L.Conv2d(3, 4, 3, stride=2, padding="same"),
        (2, 3, 7, 7),
        (2, 4, 4, 4),
        112,
    ),
    # (2·4·3 + 1)·4; out = (ceil(7/2), ceil(8/3))
    (
        "conv2d_same_even_reflect",
        lambda: L.Conv2d(3, 4, (2, 4), stride=(2, 3), padding="same", padding_mode="reflect"),
        (2, 3, 7, 8),
        (2, 4, 4, 3),
        100,
    ),
    (
        "conv1d_same_s2",
        lambda: L.Conv1d(2, 3, 4, stride=2, padding="same"),
        (2, 2, 9),
        (2, 3, 5),
        27,
    ),
    (
        "conv3d_same",
        lambda: L.Conv3d(2, 3, 2, padding="same"),
        (1, 2, 3, 4, 5),
        (1, 3, 3, 4, 5),
        51,
    ),
    ("conv2d_valid", lambda: L.Conv2d(3, 2, 3), (2, 3, 6, 5), (2, 2, 4, 3), 56),
    # depthwise 3·3·4 (no bias) + pointwise 4·6 + 6
    (
        "separable",
        lambda: L.SeparableConv2d(4, 6, 3, padding="same"),
        (2, 4, 6, 6),
        (2, 6, 6, 6),
        66,
    ),
    # conv 3 -> 2·2² channels: (3·3·3 + 1)·8
    ("subpixel", lambda: L.SubPixelUpsample(3, 2, scale=2), (2, 3, 4, 4), (2, 2, 8, 8), 224),
    # 3·2·3·3 + 2; out = (4 - 1)·2 + 3
    (
        "conv_transpose",
        lambda: L.ConvTranspose2d(3, 2, 3, stride=2),
        (1, 3, 4, 4),
        (1, 2, 9, 9),
        56,
    ),
    # conv's (3·3·2 + 1)·3 = 57 per position, 3·3 positions
    (
        "locally_connected",
        lambda: L.LocallyConnected2d(2, 3, 5, 3),
        (2, 2, 5, 5),
        (2, 3, 3, 3),
        513,
    ),
    ("channel_pool", lambda: L.ChannelPool(2), (2, 6, 3, 3), (2, 3, 3, 3), 0),
    ("channel_pool_avg_overlap", lambda: L.ChannelPool(3, 1, "avg"), (2, 5, 3, 3), (2, 3, 3, 3), 0),
    ("global_max", lambda: L.GlobalPool2d("max"), (2, 3, 4, 4), (2, 3), 0),
    ("global_avg_keep", lambda: L.GlobalPool2d("avg", keepdim=True), (2, 3, 4, 4), (2, 3, 1, 1), 0),
    # (3 + 1)·4·3
    ("maxout_conv", lambda: L.Maxout(3, 4, pieces=3), (4, 3, 5, 5), (4, 4, 5, 5), 48),
    ("maxout_dense", lambda: L.Maxout(5, 2, pieces=2), (16, 5), (16, 2), 24),
    ("glu", lambda: L.get_activation("glu"), (2, 6, 3, 3), (2, 3, 3, 3), 0),
    # 2 convs 3·3·4·4 + 2 BNs 2·4
    ("residual_identity", lambda: L.ResidualBlock(4, 4), (2, 4, 6, 6), (2, 4, 6, 6), 304),
    # 3·3·4·8 + 16 + 3·3·8·8 + 16 + 1·1·4·8 + 16
    (
        "residual_projection",
        lambda: L.ResidualBlock(4, 8, stride=2),
        (2, 4, 6, 6),
        (2, 8, 3, 3),
        944,
    ),
    # 2 convs (3·3·3 + 1)·3
    ("highway", lambda: L.HighwayConv2d(3), (2, 3, 5, 5), (2, 3, 5, 5), 168),
    # layer i (in = 4 + 2i): BN 2·in + 1x1 in·8 + BN 16 + 3x3 9·8·2 -> 200 + 220 + 240
    ("dense_block", lambda: L.DenseBlock(3, 4, 2), (2, 4, 5, 5), (2, 10, 5, 5), 660),
    # layer 0: 8 + 9·4·3, layer 1: 14 + 9·7·3
    (
        "dense_block_no_bottleneck",
        lambda: L.DenseBlock(2, 4, 3, bottleneck=False),
        (2, 4, 5, 5),
        (2, 10, 5, 5),
        319,
    ),
    ("transition", lambda: L.Transition(10, 5), (2, 10, 6, 6), (2, 5, 3, 3), 70),
    # 10 + (15 + 112) + (10 + 153) + 10
    ("inception", lambda: L.InceptionModule(4, 2, 3, 4, 2, 3, 2), (2, 4, 6, 6), (2, 11, 6, 6), 310),
    # 10 + 148 + 303, pool branch passes the 4 input channels through
    (
        "inception_naive",
        lambda: L.InceptionModule(4, 2, 1, 4, 1, 3, 1, naive=True),
        (2, 4, 6, 6),
        (2, 13, 6, 6),
        461,
    ),
    # hidden 8 // 4 = 2: (8·2 + 2) + (2·8 + 8)
    (
        "squeeze_excitation",
        lambda: L.SqueezeExcitation(8, reduction=4),
        (2, 8, 3, 3),
        (2, 8, 3, 3),
        42,
    ),
    # hidden 8: 32 + 16 + 72 + 16 + 32 + 8
    ("inverted_residual", lambda: L.InvertedResidual(4, 4, 1, 2), (2, 4, 6, 6), (2, 4, 6, 6), 176),
    # no expansion: 36 + 8 + 24 + 12
    (
        "inverted_residual_s2",
        lambda: L.InvertedResidual(4, 6, 2, 1),
        (2, 4, 6, 6),
        (2, 6, 3, 3),
        80,
    ),
]


@pytest.mark.parametrize(
    ("factory", "in_shape", "out_shape", "n_params"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_layer_contract(
    factory: Callable[[], nn.Module],
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    n_params: int,
) -> None:
    torch.manual_seed(0)
    layer = factory()
    x = torch.randn(in_shape, requires_grad=True)
    y = layer(x)
    assert tuple(y.shape) == out_shape
    assert sum(p.numel() for p in layer.parameters()) == n_params
    # A random weighting, not y.sum(): a sum after BatchNorm has zero gradient upstream.
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
