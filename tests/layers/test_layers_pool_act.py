"""Channel pooling, global pooling, Maxout, GLU and the activation table against manual oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError, UnknownNameError
from cnnlab.layers import ACTIVATIONS, ChannelPool, GlobalPool2d, Maxout, get_activation


def test_channel_pool_max_is_reshape_max() -> None:
    x = torch.randn(2, 6, 3, 4)
    expected = x.reshape(2, 3, 2, 3, 4).amax(dim=2)  # groups of 2 consecutive channels
    torch.testing.assert_close(ChannelPool(2)(x), expected)


def test_channel_pool_overlapping_avg() -> None:
    x = torch.randn(2, 5, 3)
    expected = torch.stack([x[:, i : i + 3].mean(dim=1) for i in (0, 2)], dim=1)
    torch.testing.assert_close(ChannelPool(3, stride=2, mode="avg")(x), expected)


def test_channel_pool_gradcheck() -> None:
    x = torch.randn(1, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ChannelPool(3, stride=1), (x,))
    assert torch.autograd.gradcheck(ChannelPool(2, mode="avg"), (x,))


def test_channel_pool_errors() -> None:
    with pytest.raises(
        ShapeMismatchError, match=r"C >= kernel_size=4.*received shape \(1, 3, 2, 2\)"
    ):
        ChannelPool(4)(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ConfigError, match="Expected kernel_size > 0, received kernel_size=0"):
        ChannelPool(0)
    with pytest.raises(ConfigError, match="received mode='min'"):
        ChannelPool(2, mode="min")


def test_global_pool_matches_adaptive() -> None:
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(GlobalPool2d("max")(x), F.adaptive_max_pool2d(x, 1).flatten(1))
    torch.testing.assert_close(GlobalPool2d("avg", keepdim=True)(x), F.adaptive_avg_pool2d(x, 1))
    with pytest.raises(ShapeMismatchError, match=r"received shape \(2, 3\)"):
        GlobalPool2d()(torch.zeros(2, 3))


def test_global_pool_avgmax_modes_match_numpy() -> None:
    x = torch.randn(2, 3, 5, 4)
    a = x.numpy()
    avg, most = a.mean(axis=(2, 3)), a.max(axis=(2, 3))
    torch.testing.assert_close(GlobalPool2d("avgmax")(x), torch.from_numpy((avg + most) / 2))
    both = GlobalPool2d("catavgmax", keepdim=True)(x)
    assert both.shape == (2, 6, 1, 1) and GlobalPool2d("catavgmax").multiplier == 2
    torch.testing.assert_close(both.flatten(1), torch.from_numpy(np.concatenate([avg, most], 1)))
    with pytest.raises(ConfigError, match="received mode='sum'"):
        GlobalPool2d("sum")


def test_maxout_is_max_over_pieces() -> None:
    torch.manual_seed(0)
    layer = Maxout(3, 2, pieces=4)
    x = torch.randn(5, 3)
    w = layer.linear.weight.reshape(2, 4, 3)
    b = layer.linear.bias.reshape(2, 4)
    expected = (torch.einsum("opi,bi->bop", w, x) + b).amax(dim=2)
    torch.testing.assert_close(layer(x), expected)


def test_maxout_on_feature_maps_is_per_pixel() -> None:
    torch.manual_seed(0)
    layer = Maxout(3, 2, pieces=2)
    x = torch.randn(2, 3, 4, 5)
    per_pixel = layer(x.permute(0, 2, 3, 1).reshape(-1, 3)).reshape(2, 4, 5, 2).permute(0, 3, 1, 2)
    torch.testing.assert_close(layer(x), per_pixel)


def test_maxout_gradcheck_and_errors() -> None:
    torch.manual_seed(0)
    layer = Maxout(3, 2, pieces=3).double()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    with pytest.raises(
        ShapeMismatchError, match=r"expected input \(B, 3, \.\.\.\), received shape \(2, 4\)"
    ):
        layer(torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="received pieces=0"):
        Maxout(3, 2, pieces=0)


def test_glu_gates_second_half() -> None:
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(get_activation("glu")(x), x[:, :3] * torch.sigmoid(x[:, 3:]))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_builds_and_runs(name: str) -> None:
    layer = get_activation(name)
    assert isinstance(layer, nn.Module)
    assert layer(torch.randn(2, 4, 3)).shape[0] == 2


def test_activation_kwargs_and_unknown_name() -> None:
    leaky = get_activation("leaky_relu", negative_slope=0.5)
    torch.testing.assert_close(leaky(torch.tensor([-2.0, 2.0])), torch.tensor([-1.0, 2.0]))
    with pytest.raises(
        UnknownNameError, match=r"unknown activation 'swishy'; expected one of: .*gelu.*relu"
    ):
        get_activation("swishy")
