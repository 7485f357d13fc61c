"""CausalConv1d against nn.Conv1d on a hand-padded input and a NumPy loop; its queue
against the whole-sequence forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.layers.causal import CausalConv1d, CausalQueue

SHAPES = [(1, 1), (2, 1), (2, 4), (3, 2), (5, 3)]  # (kernel_size, dilation)


def numpy_causal_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, dilation: int) -> np.ndarray:
    """y[n, o, t] = b[o] + sum_{c, j} w[o, c, j] x[n, c, t - (k - 1 - j) d], zero before t = 0."""
    n, _, length = x.shape
    k = w.shape[2]
    y = np.tile(b[None, :, None], (n, 1, length)).astype(np.float64)
    for t in range(length):
        for j in range(k):
            s = t - (k - 1 - j) * dilation
            if s >= 0:
                y[:, :, t] += x[:, :, s] @ w[:, :, j].T
    return y


@pytest.mark.parametrize(("kernel_size", "dilation"), SHAPES)
def test_matches_conv1d_on_a_left_padded_input(kernel_size: int, dilation: int) -> None:
    torch.manual_seed(0)
    layer = CausalConv1d(3, 4, kernel_size, dilation)
    oracle = nn.Conv1d(3, 4, kernel_size, dilation=dilation)
    oracle.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 11)
    out = layer(x)
    assert out.shape == (2, 4, 11)
    torch.testing.assert_close(out, oracle(F.pad(x, ((kernel_size - 1) * dilation, 0))))


@pytest.mark.parametrize(("kernel_size", "dilation"), SHAPES)
def test_matches_a_numpy_loop(kernel_size: int, dilation: int) -> None:
    torch.manual_seed(1)
    layer = CausalConv1d(2, 3, kernel_size, dilation).double()
    assert layer.bias is not None
    x = torch.randn(2, 2, 9, dtype=torch.float64)
    expected = numpy_causal_conv(
        x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(), dilation
    )
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kernel_size", "dilation"), [(2, 1), (3, 2), (2, 4)])
def test_output_t_has_zero_gradient_from_inputs_after_t(kernel_size: int, dilation: int) -> None:
    torch.manual_seed(2)
    layer = CausalConv1d(3, 2, kernel_size, dilation).double()
    length = 12
    for t in range(length):
        x = torch.randn(1, 3, length, dtype=torch.float64, requires_grad=True)
        layer(x)[..., t].sum().backward()
        assert x.grad is not None
        reached = x.grad.abs().sum(1)[0] != 0  # (L,)
        assert not reached[t + 1 :].any()  # exactly zero: not merely small
        taps = [s for s in range(t - (kernel_size - 1) * dilation, t + 1, dilation) if s >= 0]
        assert reached.nonzero().flatten().tolist() == taps


def test_receptive_field_and_parameter_count() -> None:
    layer = CausalConv1d(3, 4, 3, dilation=4, bias=False)
    assert layer.receptive_field == 2 * 4 + 1
    assert sum(p.numel() for p in layer.parameters()) == 3 * 4 * 3  # no bias
    assert CausalConv1d(3, 4, 3).receptive_field == 3


@pytest.mark.parametrize(("kernel_size", "dilation"), SHAPES)
def test_the_queue_gives_the_forward_one_step_at_a_time(kernel_size: int, dilation: int) -> None:
    torch.manual_seed(3)
    layer = CausalConv1d(3, 5, kernel_size, dilation).double()
    x = torch.randn(2, 3, 17, dtype=torch.float64)
    queue = CausalQueue(layer, batch=2)
    with torch.no_grad():
        steps = torch.stack([queue(x[:, :, t]) for t in range(x.shape[2])], -1)
        expected = layer(x)
    torch.testing.assert_close(steps, expected, rtol=1e-12, atol=1e-12)
    assert queue.buffer.shape == (2, 3, (kernel_size - 1) * dilation + 1)  # no more kept


def test_errors_name_what_was_received() -> None:
    with pytest.raises(ConfigError, match=r"kernel_size >= 1, received kernel_size=0"):
        CausalConv1d(1, 1, 0)
    with pytest.raises(ConfigError, match=r"dilation >= 1, received dilation=0"):
        CausalConv1d(1, 1, 2, dilation=0)
    with pytest.raises(ShapeMismatchError, match=r"\(B, 3, L\), received \(2, 4, 5\)"):
        CausalConv1d(3, 1, 2)(torch.randn(2, 4, 5))
    with pytest.raises(ShapeMismatchError, match=r"received \(3, 5\)"):
        CausalConv1d(3, 1, 2)(torch.randn(3, 5))
