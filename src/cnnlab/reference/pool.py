"""Max and average pooling in NumPy; max-pool remembers each window's winner for backprop."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def _pool_windows(x: np.ndarray, kernel_size: int, stride: int) -> np.ndarray:
    """Every pooling window as a view: (N, C, H, W) -> (N, C, Ho, Wo, k, k)."""
    N, C, H, W = x.shape
    Ho, Wo = (H - kernel_size) // stride + 1, (W - kernel_size) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"Expected input at least {kernel_size}x{kernel_size}, received {H}x{W}")
    sn, sc, sh, sw = x.strides
    shape = (N, C, Ho, Wo, kernel_size, kernel_size)
    return as_strided(
        x, shape=shape, strides=(sn, sc, sh * stride, sw * stride, sh, sw), writeable=False
    )


def max_pool2d(
    x: np.ndarray, kernel_size: int = 2, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Largest value of each window, and where it was.

    Args:
        x: input, (N, C, H, W).
        kernel_size: window side.
        stride: step between windows; defaults to ``kernel_size`` (no overlap).

    Returns:
        (y, argmax): y is (N, C, Ho, Wo); argmax holds, for each output cell, the flat
        index ``row * W + col`` of the winning input cell (PyTorch's ``return_indices``).
    """
    stride = stride or kernel_size
    W = x.shape[3]
    win = _pool_windows(x, kernel_size, stride)  # (N, C, Ho, Wo, k, k)
    flat = win.reshape(*win.shape[:4], -1)  # (N, C, Ho, Wo, k*k)
    a = flat.argmax(axis=-1)  # (N, C, Ho, Wo), position inside the window
    Ho, Wo = a.shape[2:]
    rows = np.arange(Ho)[:, None] * stride + a // kernel_size
    cols = np.arange(Wo)[None, :] * stride + a % kernel_size
    y = np.take_along_axis(flat, a[..., None], axis=-1)[..., 0]
    return y, rows * W + cols


def max_pool2d_backward(
    grad_out: np.ndarray, argmax: np.ndarray, input_shape: tuple[int, ...]
) -> np.ndarray:
    """Route each output gradient to the one input cell that won its window; the rest get 0.

    Args:
        grad_out: dL/dy, (N, C, Ho, Wo).
        argmax: winners from :func:`max_pool2d`, (N, C, Ho, Wo).
        input_shape: (N, C, H, W) of the forward input.

    Returns:
        dL/dx, (N, C, H, W).
    """
    N, C, H, W = input_shape
    dx = np.zeros((N * C, H * W), dtype=grad_out.dtype)
    plane = np.arange(N * C)[:, None]  # (N*C, 1)
    # add.at, not assignment: with overlapping windows one cell can win twice
    np.add.at(dx, (plane, argmax.reshape(N * C, -1)), grad_out.reshape(N * C, -1))
    return dx.reshape(N, C, H, W)


def avg_pool2d(x: np.ndarray, kernel_size: int = 2, stride: int | None = None) -> np.ndarray:
    """Mean of each window: (N, C, H, W) -> (N, C, Ho, Wo); stride defaults to ``kernel_size``."""
    return _pool_windows(x, kernel_size, stride or kernel_size).mean(axis=(4, 5))


def avg_pool2d_backward(
    grad_out: np.ndarray,
    input_shape: tuple[int, ...],
    kernel_size: int = 2,
    stride: int | None = None,
) -> np.ndarray:
    """Share each output gradient equally, 1/k² each, among the cells of its window.

    Args:
        grad_out: dL/dy, (N, C, Ho, Wo).
        input_shape: (N, C, H, W) of the forward input.
        kernel_size: window side.
        stride: step between windows; defaults to ``kernel_size``.

    Returns:
        dL/dx, (N, C, H, W).
    """
    stride = stride or kernel_size
    Ho, Wo = grad_out.shape[2:]
    dx = np.zeros(input_shape, dtype=grad_out.dtype)
    share = grad_out / kernel_size**2
    for r in range(kernel_size):  # one slice per tap of the window
        for s in range(kernel_size):
            dx[:, :, r : r + stride * Ho : stride, s : s + stride * Wo : stride] += share
    return dx
