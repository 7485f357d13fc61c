"""Reference dense, activations, softmax CE, batch norm and dropout against PyTorch and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.reference import ops

TOL = 1e-8
seeds = st.integers(0, 2**16)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), seeds)
def test_dense_matches_torch(n: int, d_in: int, d_out: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(n, d_in)), rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.linear(xt, wt, bt)
    g = rng.normal(size=(n, d_out))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ops.dense(x, w, b), yt.detach().numpy(), atol=TOL, rtol=0)
    for ours, theirs in zip(ops.dense_backward(x, w, g), (xt, wt, bt), strict=True):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=TOL, rtol=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 7), seeds)
def test_relu_and_tanh_match_torch(n: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    for fwd, bwd, oracle, uses_output in (
        (ops.relu, ops.relu_backward, torch.relu, False),
        (ops.tanh, ops.tanh_backward, torch.tanh, True),
    ):
        xt = torch.tensor(x, requires_grad=True)
        yt = oracle(xt)
        yt.backward(torch.tensor(g))
        y = fwd(x)
        np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL, rtol=0)
        np.testing.assert_allclose(
            bwd(y if uses_output else x, g), xt.grad.numpy(), atol=TOL, rtol=0
        )


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(2, 7), seeds)
def test_softmax_cross_entropy_matches_torch(n: int, classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits, labels = rng.normal(size=(n, classes)) * 5, rng.integers(0, classes, size=n)
    lt = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(lt, torch.tensor(labels))
    loss_t.backward()
    loss, probs = ops.softmax_cross_entropy(logits, labels)
    assert abs(loss - loss_t.item()) < TOL
    np.testing.assert_allclose(
        ops.softmax_cross_entropy_backward(probs, labels), lt.grad.numpy(), atol=TOL, rtol=0
    )


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([(4, 3), (3, 2, 4, 5), (2, 3, 1, 2), (5, 1)]), seeds)
def test_batch_norm_train_matches_torch_including_running_stats(
    shape: tuple[int, ...], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, gamma, beta = rng.normal(size=shape) * 3 + 1, rng.normal(size=c), rng.normal(size=c)
    rm, rv = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    yt = F.batch_norm(xt, rm_t, rv_t, gt, bt, training=True, momentum=0.1, eps=1e-5)
    g = rng.normal(size=shape)
    yt.backward(torch.tensor(g))
    y, cache = ops.batch_norm(x, gamma, beta, rm, rv, training=True)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(rm, rm_t.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(rv, rv_t.numpy(), atol=TOL, rtol=0)
    for ours, theirs in zip(ops.batch_norm_backward(cache, g), (xt, gt, bt), strict=True):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=1e-7, rtol=1e-7)


def test_batch_norm_eval_uses_running_stats_and_matches_torch() -> None:
    rng = np.random.default_rng(0)
    x, gamma, beta = rng.normal(size=(3, 2, 4, 4)), rng.normal(size=2), rng.normal(size=2)
    rm, rv = np.array([0.5, -1.0]), np.array([2.0, 0.25])
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    yt = F.batch_norm(xt, torch.tensor(rm), torch.tensor(rv), gt, bt, training=False)
    g = rng.normal(size=x.shape)
    yt.backward(torch.tensor(g))
    y, cache = ops.batch_norm(x, gamma, beta, rm, rv, training=False)
    np.testing.assert_array_equal(rm, [0.5, -1.0])  # eval leaves the running stats alone
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=TOL, rtol=0)
    for ours, theirs in zip(ops.batch_norm_backward(cache, g), (xt, gt, bt), strict=True):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=TOL, rtol=0)


def test_dropout_mask_statistics_and_backward_reuses_mask() -> None:
    x = np.ones((200, 500))
    y, mask = ops.dropout(x, 0.3, np.random.default_rng(0))
    kept = mask > 0
    assert abs(kept.mean() - 0.7) < 0.005  # 100k Bernoulli draws: std 0.0014
    np.testing.assert_allclose(mask[kept], 1 / 0.7)
    assert abs(y.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation
    g = np.random.default_rng(1).normal(size=x.shape)
    np.testing.assert_array_equal(ops.dropout_backward(mask, g), g * mask)
    y2, _ = ops.dropout(x, 0.3, np.random.default_rng(0))
    np.testing.assert_array_equal(y, y2)  # same generator seed, same mask
    y_eval, _ = ops.dropout(x, 0.3, np.random.default_rng(0), training=False)
    np.testing.assert_array_equal(y_eval, x)
    with pytest.raises(ValueError, match="received p=1"):
        ops.dropout(x, 1, np.random.default_rng(0))


def test_ops_backward_match_finite_differences(fd_grad) -> None:
    rng = np.random.default_rng(2)
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=2)
    g = rng.normal(size=(3, 2))
    dx, dw, db = ops.dense_backward(x, w, g)
    np.testing.assert_allclose(
        dx, fd_grad(lambda v: float((ops.dense(v, w, b) * g).sum()), x), atol=1e-6
    )
    np.testing.assert_allclose(
        dw, fd_grad(lambda v: float((ops.dense(x, v, b) * g).sum()), w), atol=1e-6
    )
    np.testing.assert_allclose(
        db, fd_grad(lambda v: float((ops.dense(x, w, v) * g).sum()), b), atol=1e-6
    )
    z = rng.normal(size=(3, 4))
    gz = rng.normal(size=z.shape)
    np.testing.assert_allclose(
        ops.relu_backward(z, gz), fd_grad(lambda v: float((ops.relu(v) * gz).sum()), z), atol=1e-6
    )
    np.testing.assert_allclose(
        ops.tanh_backward(np.tanh(z), gz),
        fd_grad(lambda v: float((np.tanh(v) * gz).sum()), z),
        atol=1e-6,
    )
    labels = np.array([0, 3, 1])
    _, probs = ops.softmax_cross_entropy(z, labels)
    numeric = fd_grad(lambda v: ops.softmax_cross_entropy(v, labels)[0], z)
    np.testing.assert_allclose(
        ops.softmax_cross_entropy_backward(probs, labels), numeric, atol=1e-6
    )


def test_batch_norm_backward_matches_finite_differences(fd_grad) -> None:
    rng = np.random.default_rng(3)
    x, gamma, beta = rng.normal(size=(4, 2, 3, 3)), rng.normal(size=2), rng.normal(size=2)
    g = rng.normal(size=x.shape)

    def loss(v: np.ndarray, gm: np.ndarray = gamma, bt: np.ndarray = beta) -> float:
        y, _ = ops.batch_norm(v, gm, bt, np.zeros(2), np.ones(2), training=True)
        return float((y * g).sum())

    _, cache = ops.batch_norm(x, gamma, beta, np.zeros(2), np.ones(2), training=True)
    dx, dgamma, dbeta = ops.batch_norm_backward(cache, g)
    np.testing.assert_allclose(dx, fd_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(dgamma, fd_grad(lambda v: loss(x, gm=v), gamma), atol=1e-6)
    np.testing.assert_allclose(dbeta, fd_grad(lambda v: loss(x, bt=v), beta), atol=1e-6)


def test_dropout_backward_matches_finite_differences(fd_grad) -> None:
    rng = np.random.default_rng(4)
    x, g = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    _, mask = ops.dropout(x, 0.4, np.random.default_rng(7))
    # re-seeding the generator redraws the same mask on every call, so the function is smooth
    numeric = fd_grad(
        lambda v: float((ops.dropout(v, 0.4, np.random.default_rng(7))[0] * g).sum()), x
    )
    np.testing.assert_allclose(ops.dropout_backward(mask, g), numeric, atol=1e-6)
