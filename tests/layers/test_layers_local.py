"""LocallyConnected2d: a conv when every position shares one kernel; conv's params × positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.layers import LocallyConnected2d, conv_output_size, conv_params


def tie_to_kernel(layer: LocallyConnected2d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Give every output position the same (out, in, kh, kw) kernel and per-channel bias."""
    with torch.no_grad():
        layer.weight.copy_(weight.flatten(1).expand_as(layer.weight))
        assert layer.bias is not None
        layer.bias.copy_(bias[:, None, None].expand_as(layer.bias))


@pytest.mark.parametrize(
    ("input_size", "kernel_size", "stride", "padding"), [(6, 3, 1, 0), ((7, 5), (3, 2), (2, 1), 1)]
)
def test_equals_conv_when_weights_shared(
    input_size: int | tuple[int, int],
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    padding: int,
) -> None:
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, input_size, kernel_size, stride, padding)
    ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    weight, bias = torch.randn(4, 3, *ks), torch.randn(4)
    tie_to_kernel(layer, weight, bias)
    hw = (input_size, input_size) if isinstance(input_size, int) else input_size
    x = torch.randn(2, 3, *hw)
    torch.testing.assert_close(layer(x), F.conv2d(x, weight, bias, stride, padding))


def test_positions_are_independent() -> None:
    torch.manual_seed(0)
    layer = LocallyConnected2d(1, 1, 4, 3, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[3] = 1.0  # position 3 is (row 1, col 1) of the 2x2 output
    y = layer(torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(y, torch.tensor([[[[0.0, 0.0], [0.0, 9.0]]]]))


@pytest.mark.parametrize("bias", [True, False])
def test_params_are_conv_params_times_positions(bias: bool) -> None:
    layer = LocallyConnected2d(3, 5, (8, 6), 3, stride=2, padding=1, bias=bias)
    assert conv_output_size((8, 6), 3, 2, 1) == layer.output_size == (4, 3)
    positions = 4 * 3
    total = sum(p.numel() for p in layer.parameters())
    assert total == conv_params(3, 5, 3, bias=bias) * positions


def test_gradcheck() -> None:
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 2, (4, 3), 2, padding=1).double()
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_wrong_input_size() -> None:
    layer = LocallyConnected2d(2, 2, 5, 3)
    with pytest.raises(
        ShapeMismatchError, match=r"expected spatial size \(5, 5\), received shape \(1, 2, 6, 5\)"
    ):
        layer(torch.zeros(1, 2, 6, 5))
    with pytest.raises(ShapeMismatchError, match=r"received shape \(1, 3, 5, 5\)"):
        layer(torch.zeros(1, 3, 5, 5))
