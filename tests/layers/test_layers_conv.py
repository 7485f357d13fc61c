"""Conv, separable, sub-pixel and transposed convolutions against PyTorch and NumPy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.layers import (
    Conv,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose2d,
    SeparableConv2d,
    SubPixelUpsample,
)
from cnnlab.layers.arithmetic import same_padding

TORCH_FUNCS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def reference(layer: Conv, x: torch.Tensor, pad: list[int], mode: str = "constant") -> torch.Tensor:
    """Hand-padded input then PyTorch's functional conv with the layer's own weights."""
    conv = layer.conv
    x = F.pad(x, pad, mode=mode)
    return TORCH_FUNCS[layer.ndim](
        x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups
    )


@pytest.mark.parametrize(
    ("padding", "stride", "dilation", "groups"),
    [(0, 1, 1, 1), (2, 1, 1, 1), ((1, 0), 2, 1, 1), ("valid", (2, 1), 2, 1), (1, 1, (1, 2), 2)],
)
def test_matches_torch_conv2d(
    padding: int | tuple[int, int] | str, stride: int, dilation: int, groups: int
) -> None:
    torch.manual_seed(0)
    layer = Conv2d(4, 6, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    torch_padding = 0 if padding == "valid" else padding
    oracle = nn.Conv2d(
        4, 6, 3, stride=stride, padding=torch_padding, dilation=dilation, groups=groups
    )
    oracle.load_state_dict(layer.conv.state_dict())
    x = torch.randn(2, 4, 9, 8)
    torch.testing.assert_close(layer(x), oracle(x))


@pytest.mark.parametrize(("ndim", "kernel_size"), [(1, 5), (2, 3), (2, (3, 5)), (3, 3)])
def test_same_stride1_odd_matches_torch_same(ndim: int, kernel_size: int | tuple[int, int]) -> None:
    torch.manual_seed(0)
    layer = Conv(ndim, 2, 3, kernel_size, padding="same")
    oracle_cls: Callable[..., nn.Module] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
    oracle = oracle_cls(2, 3, kernel_size, padding="same")
    oracle.load_state_dict(layer.conv.state_dict())
    x = torch.randn(2, 2, *[6] * ndim)
    torch.testing.assert_close(layer(x), oracle(x))


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
@pytest.mark.parametrize(("stride", "dilation"), [(2, 1), (3, 1), (2, 2)])
def test_same_strided_output_is_ceil(kernel_size: int, stride: int, dilation: int) -> None:
    layer = Conv1d(1, 1, kernel_size, stride=stride, padding="same", dilation=dilation)
    for size in range(1, 16):
        assert layer(torch.zeros(1, 1, size)).shape[-1] == math.ceil(size / stride)


@pytest.mark.parametrize("mode", ["zeros", "replicate", "reflect"])
def test_same_even_kernel_strided_equals_asymmetric_pad(mode: str) -> None:
    torch.manual_seed(0)
    layer = Conv2d(2, 3, (4, 2), stride=(2, 3), padding="same", padding_mode=mode)
    x = torch.randn(2, 2, 9, 8)
    # H: in 9, k 4, s 2 -> out 5, total (5-1)·2 + 4 - 9 = 3 -> (1, 2); W: in 8, k 2, s 3 -> out 3, total 0.
    assert same_padding(9, 4, 2) == (1, 2)
    assert same_padding(8, 2, 3) == (0, 0)
    f_mode = {"zeros": "constant", "replicate": "replicate", "reflect": "reflect"}[mode]
    torch.testing.assert_close(layer(x), reference(layer, x, [0, 0, 1, 2], f_mode))
    assert layer(x).shape == (2, 3, 5, 3)
    assert layer.weight is layer.conv.weight and layer.bias is layer.conv.bias


def test_same_even_kernel_matches_numpy() -> None:
    torch.manual_seed(0)
    layer = Conv2d(1, 1, 2, stride=2, padding="same", bias=False)
    x = torch.randn(1, 1, 5, 5)
    # in 5, k 2, s 2: out 3, total (3-1)·2 + 2 - 5 = 1 -> zero row/column after only.
    xp = np.pad(x[0, 0].numpy(), ((0, 1), (0, 1)))
    w = layer.conv.weight[0, 0].detach().numpy()
    expected = np.array(
        [[np.sum(xp[2 * i : 2 * i + 2, 2 * j : 2 * j + 2] * w) for j in range(3)] for i in range(3)]
    )
    np.testing.assert_allclose(layer(x)[0, 0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["replicate", "reflect"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_padding_modes_match_f_pad(mode: str, ndim: int) -> None:
    torch.manual_seed(0)
    layer = Conv(ndim, 2, 2, 3, padding=1, padding_mode=mode)
    x = torch.randn(1, 2, *[4] * ndim)
    torch.testing.assert_close(layer(x), reference(layer, x, [1, 1] * ndim, mode))


def test_replicate_repeats_the_edge() -> None:
    layer = Conv1d(1, 1, 3, padding=1, padding_mode="replicate", bias=False)
    nn.init.constant_(layer.conv.weight, 1.0)
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    # padded [1, 1, 2, 3, 3] -> window sums 4, 6, 8
    torch.testing.assert_close(layer(x), torch.tensor([[[4.0, 6.0, 8.0]]]))


def test_conv3d_strided_same_shape() -> None:
    layer = Conv3d(1, 2, (2, 3, 4), stride=2, padding="same")
    assert layer(torch.zeros(1, 1, 5, 6, 7)).shape == (1, 2, 3, 3, 4)


def test_gradcheck_same_asymmetric() -> None:
    torch.manual_seed(0)
    layer = Conv2d(2, 2, (2, 3), stride=2, padding="same", padding_mode="reflect").double()
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_separable_equals_depthwise_then_pointwise() -> None:
    torch.manual_seed(0)
    layer = SeparableConv2d(3, 5, 3, padding=1, depth_multiplier=2)
    depthwise = nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False)
    pointwise = nn.Conv2d(6, 5, 1)
    depthwise.load_state_dict(layer.depthwise.conv.state_dict())
    pointwise.load_state_dict(layer.pointwise.conv.state_dict())
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x), pointwise(depthwise(x)))


def test_pixel_shuffle_h_h_c_to_2h_2h_c_over_4() -> None:
    # Seed 004: H×H×C -> 2H×2H×C/4, by rearranging values only.
    x = torch.arange(16 * 3 * 3, dtype=torch.float32).reshape(1, 16, 3, 3)
    y = nn.PixelShuffle(2)(x)
    assert y.shape == (1, 4, 6, 6)
    assert torch.equal(y.flatten().sort().values, x.flatten())
    # Output channel c at (2i + a, 2j + b) comes from input channel 4c + 2a + b at (i, j).
    assert y[0, 1, 2 * 1 + 1, 2 * 2 + 0] == x[0, 4 * 1 + 2 * 1 + 0, 1, 2]


def test_subpixel_upsample_scale3() -> None:
    layer = SubPixelUpsample(2, 3, scale=3)
    assert layer(torch.zeros(1, 2, 4, 5)).shape == (1, 3, 12, 15)


def test_conv_transpose_size_formula() -> None:
    # out = (in - 1)·S - 2P + D·(F - 1) + output_padding + 1
    layer = ConvTranspose2d(2, 3, 4, stride=2, padding=1, output_padding=1)
    assert layer(torch.zeros(1, 2, 5, 5)).shape == (1, 3, (5 - 1) * 2 - 2 + 3 + 1 + 1, 11)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 8, 8), r"expected input of shape \(B, C=3, D1, D2\), received shape \(3, 8, 8\)"),
        (
            (1, 4, 8, 8),
            r"expected input of shape \(B, C=3, D1, D2\), received shape \(1, 4, 8, 8\)",
        ),
        ((1, 3, 8, 8, 8), r"received shape \(1, 3, 8, 8, 8\)"),
    ],
)
def test_wrong_rank_or_channels(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ShapeMismatchError, match=message):
        Conv2d(3, 4, 3)(torch.zeros(shape))


def test_kernel_larger_than_padded_input() -> None:
    layer = Conv2d(1, 1, 5, padding=1)
    with pytest.raises(
        ShapeMismatchError, match=r"effective kernel size 5 <= padded input size 4.*input size 2"
    ):
        layer(torch.zeros(1, 1, 2, 9))
    assert Conv2d(1, 1, 5, padding="same")(torch.zeros(1, 1, 2, 2)).shape == (1, 1, 2, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 0}, "Expected kernel_size > 0, received kernel_size=0"),
        ({"stride": 0}, "Expected stride > 0, received stride=0"),
        ({"stride": (1, 0)}, r"Expected stride > 0, received stride=\(1, 0\)"),
        (
            {"padding": "full"},
            r"Expected padding in \('valid', 'same'\) or ints, received padding='full'",
        ),
        ({"padding": -1}, "Expected padding >= 0, received padding=-1"),
        ({"padding_mode": "circular"}, "received padding_mode='circular'"),
        ({"groups": 2}, "in_channels=3, out_channels=4, groups=2"),
        ({"kernel_size": (3, 3, 3)}, r"received kernel_size=\(3, 3, 3\)"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"in_channels": 3, "out_channels": 4, "kernel_size": 3} | kwargs
    with pytest.raises(ConfigError, match=message):
        Conv2d(**args)


def test_bad_ndim() -> None:
    with pytest.raises(ConfigError, match="Expected ndim in"):
        Conv(4, 1, 1, 3)
