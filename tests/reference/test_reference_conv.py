"""Reference conv2d / conv_transpose2d against PyTorch autograd and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnlab.reference.conv import (
    conv2d,
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv_output_size,
    conv_transpose2d,
    conv_transpose2d_backward,
)

TOL = 1e-8


@st.composite
def conv_cases(draw: st.DrawFn) -> dict:
    """Random small shapes, strides, paddings and dilations for which the kernel fits."""
    case = {
        "n": draw(st.integers(1, 2)),
        "c": draw(st.integers(1, 3)),
        "k": draw(st.integers(1, 3)),
        "r": draw(st.integers(1, 3)),
        "s": draw(st.integers(1, 3)),
        "h": draw(st.integers(1, 9)),
        "w": draw(st.integers(1, 9)),
        "stride": draw(st.integers(1, 3)),
        "padding": draw(st.integers(0, 2)),
        "dilation": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 2**16)),
    }
    for size, kern in (("h", "r"), ("w", "s")):
        assume(
            conv_output_size(
                case[size], case[kern], case["stride"], case["padding"], case["dilation"]
            )
            >= 1
        )
    return case


@settings(max_examples=25, deadline=None)
@given(conv_cases())
def test_conv2d_matches_torch_forward_and_backward(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rng.normal(size=(case["n"], case["c"], case["h"], case["w"]))
    w = rng.normal(size=(case["k"], case["c"], case["r"], case["s"]))
    b = rng.normal(size=case["k"])
    hp = {key: case[key] for key in ("stride", "padding", "dilation")}
    y = conv2d(x, w, b, **hp)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv2d(xt, wt, bt, **hp)
    g = rng.normal(size=y.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(
        conv2d_backward_input(g, w, (case["h"], case["w"]), **hp), xt.grad.numpy(), atol=TOL, rtol=0
    )
    np.testing.assert_allclose(
        conv2d_backward_weight(x, g, (case["r"], case["s"]), **hp),
        wt.grad.numpy(),
        atol=TOL,
        rtol=0,
    )
    np.testing.assert_allclose(conv2d_backward_bias(g), bt.grad.numpy(), atol=TOL, rtol=0)


@settings(max_examples=25, deadline=None)
@given(conv_cases())
def test_conv_transpose2d_matches_torch_forward_and_backward(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rng.normal(size=(case["n"], case["c"], case["h"], case["w"]))
    w = rng.normal(size=(case["c"], case["k"], case["r"], case["s"]))  # (C_in, C_out, R, S)
    hp = {key: case[key] for key in ("stride", "padding", "dilation")}
    out_h = (
        (case["h"] - 1) * case["stride"]
        - 2 * case["padding"]
        + case["dilation"] * (case["r"] - 1)
        + 1
    )
    out_w = (
        (case["w"] - 1) * case["stride"]
        - 2 * case["padding"]
        + case["dilation"] * (case["s"] - 1)
        + 1
    )
    assume(out_h >= 1 and out_w >= 1)
    y = conv_transpose2d(x, w, **hp)
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (x, w))
    yt = F.conv_transpose2d(xt, wt, **hp)
    g = rng.normal(size=y.shape)
    yt.backward(torch.tensor(g))
    dx, dw = conv_transpose2d_backward(x, w, g, **hp)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(dw, wt.grad.numpy(), atol=TOL, rtol=0)


@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, 0, 1), (2, 1, 1), (2, 0, 2)])
def test_conv2d_backward_matches_finite_differences(
    stride: int, padding: int, dilation: int, fd_grad
) -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(3, 2, 2, 3)), rng.normal(size=3)
    hp = {"stride": stride, "padding": padding, "dilation": dilation}
    g = rng.normal(size=conv2d(x, w, b, **hp).shape)
    np.testing.assert_allclose(
        conv2d_backward_input(g, w, (6, 5), **hp),
        fd_grad(lambda v: float((conv2d(v, w, b, **hp) * g).sum()), x),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        conv2d_backward_weight(x, g, (2, 3), **hp),
        fd_grad(lambda v: float((conv2d(x, v, b, **hp) * g).sum()), w),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        conv2d_backward_bias(g),
        fd_grad(lambda v: float((conv2d(x, w, v, **hp) * g).sum()), b),
        atol=1e-6,
    )


def test_conv2d_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"received shape \(1, 2, 4, 4\)"):
        conv2d(np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 2, 2)))


def test_conv2d_rejects_kernel_larger_than_input() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        conv2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))


def test_conv_transpose2d_backward_matches_finite_differences(fd_grad) -> None:
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(1, 2, 3, 4)), rng.normal(size=(2, 3, 3, 2))
    hp = {"stride": 2, "padding": 1, "dilation": 1}
    g = rng.normal(size=conv_transpose2d(x, w, **hp).shape)
    dx, dw = conv_transpose2d_backward(x, w, g, **hp)
    np.testing.assert_allclose(
        dx, fd_grad(lambda v: float((conv_transpose2d(v, w, **hp) * g).sum()), x), atol=1e-6
    )
    np.testing.assert_allclose(
        dw, fd_grad(lambda v: float((conv_transpose2d(x, v, **hp) * g).sum()), w), atol=1e-6
    )
