"""Reference max/avg pooling against PyTorch autograd and finite differences."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.reference.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

TOL = 1e-8


@st.composite
def pool_cases(draw: st.DrawFn) -> dict:
    """Random shapes with window k and stride (overlapping when stride < k)."""
    k = draw(st.integers(1, 3))
    return {
        "shape": (
            draw(st.integers(1, 2)),
            draw(st.integers(1, 3)),
            draw(st.integers(k, 9)),
            draw(st.integers(k, 9)),
        ),
        "k": k,
        "stride": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=25, deadline=None)
@given(pool_cases())
def test_max_pool_matches_torch_forward_indices_and_routed_grad(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rng.normal(size=case["shape"])  # continuous values: no ties
    y, argmax = max_pool2d(x, case["k"], case["stride"])
    xt = torch.tensor(x, requires_grad=True)
    yt, idx = F.max_pool2d(xt, case["k"], case["stride"], return_indices=True)
    g = rng.normal(size=y.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL, rtol=0)
    np.testing.assert_array_equal(argmax, idx.numpy())
    np.testing.assert_allclose(
        max_pool2d_backward(g, argmax, x.shape), xt.grad.numpy(), atol=TOL, rtol=0
    )


@settings(max_examples=25, deadline=None)
@given(pool_cases())
def test_avg_pool_matches_torch_forward_and_backward(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rng.normal(size=case["shape"])
    y = avg_pool2d(x, case["k"], case["stride"])
    xt = torch.tensor(x, requires_grad=True)
    yt = F.avg_pool2d(xt, case["k"], case["stride"])
    g = rng.normal(size=y.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(
        avg_pool2d_backward(g, x.shape, case["k"], case["stride"]),
        xt.grad.numpy(),
        atol=TOL,
        rtol=0,
    )


def test_pool_backward_matches_finite_differences(fd_grad) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 2, 5, 6))
    y, argmax = max_pool2d(x, 2, 1)
    g = rng.normal(size=y.shape)
    numeric = fd_grad(lambda v: float((max_pool2d(v, 2, 1)[0] * g).sum()), x)
    np.testing.assert_allclose(max_pool2d_backward(g, argmax, x.shape), numeric, atol=1e-6)
    g = rng.normal(size=avg_pool2d(x, 2).shape)
    numeric = fd_grad(lambda v: float((avg_pool2d(v, 2) * g).sum()), x)
    np.testing.assert_allclose(avg_pool2d_backward(g, x.shape, 2), numeric, atol=1e-6)


def test_max_pool_gradient_goes_only_to_the_winner() -> None:
    x = np.array([[[[1.0, 2.0], [4.0, 3.0]]]])
    y, argmax = max_pool2d(x, 2)
    assert y.item() == 4.0
    dx = max_pool2d_backward(np.array([[[[10.0]]]]), argmax, x.shape)
    np.testing.assert_array_equal(dx, [[[[0.0, 0.0], [10.0, 0.0]]]])
