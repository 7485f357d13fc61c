"""Reference layers wired in a Sequential, and SGD, against the same network in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.reference.layers import (
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Tanh,
)
from cnnlab.reference.model import SGD, Sequential
from cnnlab.reference.ops import softmax_cross_entropy, softmax_cross_entropy_backward


def small_net(rng: np.random.Generator) -> Sequential:
    return Sequential(
        Conv2d(2, 3, 3, rng, stride=1, padding=1),  # (N, 3, 6, 6)
        BatchNorm(3),
        ReLU(),
        MaxPool2d(2),  # (N, 3, 3, 3)
        Conv2d(3, 4, 2, rng),  # (N, 4, 2, 2)
        Tanh(),
        AvgPool2d(2),  # (N, 4, 1, 1)
        Flatten(),
        Dropout(0.0, rng),
        Linear(4, 5, rng),
    )


def torch_forward(x: torch.Tensor, p: list[torch.Tensor]) -> torch.Tensor:
    """The same network, written with torch.nn.functional on copies of our parameters."""
    h = F.conv2d(x, p[0], p[1], padding=1)
    h = F.batch_norm(h, None, None, p[2], p[3], training=True)
    h = F.max_pool2d(torch.relu(h), 2)
    h = F.avg_pool2d(torch.tanh(F.conv2d(h, p[4], p[5])), 2)
    return F.linear(h.flatten(1), p[6], p[7])


def test_sequential_gradients_and_sgd_step_match_torch() -> None:
    rng = np.random.default_rng(0)
    model = small_net(rng)
    x, labels = rng.normal(size=(4, 2, 6, 6)), np.array([0, 4, 2, 1])
    params_t = [torch.tensor(p.copy(), requires_grad=True) for p in model.params()]
    opt_t = torch.optim.SGD(params_t, lr=0.1, momentum=0.9, weight_decay=0.01)
    opt = SGD(model.params(), model.grads(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):  # three steps so the momentum buffer matters
        loss, probs = softmax_cross_entropy(model.forward(x), labels)
        model.backward(softmax_cross_entropy_backward(probs, labels))
        opt_t.zero_grad()
        loss_t = F.cross_entropy(torch_forward(torch.tensor(x), params_t), torch.tensor(labels))
        loss_t.backward()
        assert abs(loss - loss_t.item()) < 1e-10
        for ours, theirs in zip(model.grads(), params_t, strict=True):
            np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=1e-10)
        opt.step()
        opt_t.step()
    for ours, theirs in zip(model.params(), params_t, strict=True):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), atol=1e-10)


def test_eval_mode_reaches_batch_norm_and_dropout() -> None:
    rng = np.random.default_rng(0)
    model = Sequential(BatchNorm(2), Dropout(0.5, rng))
    x = rng.normal(size=(8, 2)) * 4 + 3
    model.train().forward(x)
    y = model.eval().forward(x)
    bn = model.layers[0]
    assert isinstance(bn, BatchNorm)
    expected = (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5)  # gamma=1, beta=0, no dropout
    np.testing.assert_allclose(y, expected)


def test_sgd_rejects_non_positive_lr() -> None:
    with pytest.raises(ValueError, match="received lr=0"):
        SGD([], [], lr=0)


def test_num_params_counts_every_array() -> None:
    model = Sequential(
        Conv2d(3, 1, 3, np.random.default_rng(0)), Flatten(), Linear(4, 2, np.random.default_rng(0))
    )
    assert model.num_params() == 28 + 4 * 2 + 2
    assert len(model.params()) == len(model.grads()) == 4
    assert isinstance(model.layers[1], Flatten)
    assert MaxPool2d(2).params() == []
