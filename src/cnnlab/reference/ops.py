"""Dense, activations, softmax cross-entropy, batch norm and dropout in NumPy, each with its backward."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Fully connected layer ``y = x @ W.T + b``: (N, in) -> (N, out); weight is (out, in)."""
    y = x @ weight.T
    return y if bias is None else y + bias


def dense_backward(
    x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`dense`.

    Returns:
        (dL/dx (N, in), dL/dW (out, in), dL/db (out,)).
    """
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(axis=0)


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` elementwise."""
    return np.maximum(x, 0.0)


def relu_backward(x: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """Pass the gradient where the input was positive, block it elsewhere."""
    return grad_out * (x > 0)


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent elementwise."""
    return np.tanh(x)


def tanh_backward(y: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """``d tanh(x)/dx = 1 - tanh(x)²``, written with the forward *output* y."""
    return grad_out * (1.0 - y * y)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, classes); the row max is subtracted so exp cannot overflow."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels.

    Args:
        logits: (N, classes).
        labels: (N,) integers in [0, classes).

    Returns:
        (loss, probs): the mean loss, and the softmax probabilities the backward needs.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, classes)
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return float(loss), np.exp(log_probs)


def softmax_cross_entropy_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dL/dlogits = (softmax - one_hot(labels)) / N."""
    grad = probs.copy()
    grad[np.arange(len(labels)), labels] -= 1.0
    return grad / len(labels)


@dataclass
class BatchNormCache:
    """What batch norm's backward needs from its forward."""

    x_hat: np.ndarray  # the normalised input, same shape as x
    inv_std: np.ndarray  # 1 / sqrt(var + eps), per channel, broadcastable to x
    gamma: np.ndarray  # (C,)
    training: bool  # eval mode treats the statistics as constants


def _channel_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Axes to reduce over and the broadcast shape of a per-channel vector, for (N, C) or (N, C, H, W)."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    return axes, (1, -1) + (1,) * (x.ndim - 2)


def batch_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, BatchNormCache]:
    """Normalise each channel, then scale by gamma and shift by beta.

    In training mode the batch statistics are used, and ``running_mean``/``running_var``
    are updated in place (PyTorch's rule: the running variance uses the unbiased batch
    variance). In eval mode the running statistics are used and left alone.

    Args:
        x: (N, C) or (N, C, H, W).
        gamma: scale, (C,).
        beta: shift, (C,).
        running_mean: (C,), updated in place when training.
        running_var: (C,), updated in place when training.
        training: batch statistics (True) or running statistics (False).
        momentum: weight of the new batch in the running averages.
        eps: added to the variance to keep the division finite.

    Returns:
        (y, cache) with y shaped like x.
    """
    axes, shape = _channel_axes(x)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)  # (C,)
        count = x.size // x.shape[1]
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * count / max(count - 1, 1)
    else:
        mean, var = running_mean, running_var
    inv_std = (1.0 / np.sqrt(var + eps)).reshape(shape)
    x_hat = (x - mean.reshape(shape)) * inv_std
    y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    return y, BatchNormCache(x_hat, inv_std, gamma, training)


def batch_norm_backward(
    cache: BatchNormCache, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batch_norm`.

    In training mode the mean and variance depend on every input, which adds two terms:
    ``dx = inv_std * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat))``.

    Returns:
        (dL/dx, dL/dgamma (C,), dL/dbeta (C,)).
    """
    axes, shape = _channel_axes(grad_out)
    dgamma = (grad_out * cache.x_hat).sum(axis=axes)
    dbeta = grad_out.sum(axis=axes)
    g_hat = grad_out * cache.gamma.reshape(shape)  # dL/dx_hat
    if not cache.training:
        return g_hat * cache.inv_std, dgamma, dbeta
    mean_g = g_hat.mean(axis=axes, keepdims=True)
    mean_gx = (g_hat * cache.x_hat).mean(axis=axes, keepdims=True)
    return cache.inv_std * (g_hat - mean_g - cache.x_hat * mean_gx), dgamma, dbeta


def dropout(
    x: np.ndarray, p: float, rng: np.random.Generator, training: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Zero each entry with probability p and scale survivors by 1/(1-p) ("inverted" dropout).

    Args:
        x: any shape.
        p: drop probability in [0, 1).
        rng: the generator that draws the mask, so runs are reproducible.
        training: in eval mode the input passes unchanged (mask of ones).

    Returns:
        (y, mask): the backward multiplies by the same mask.
    """
    if not 0 <= p < 1:
        raise ValueError(f"Expected 0 <= p < 1, received p={p}")
    if not training or p == 0:
        return x, np.ones_like(x)
    mask = (rng.random(x.shape) >= p) / (1.0 - p)  # (same shape as x), entries 0 or 1/(1-p)
    return x * mask, mask


def dropout_backward(mask: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """Only the kept entries pass gradient, scaled like the forward."""
    return grad_out * mask
