"""2-D convolution in NumPy: forward, backward (as a full convolution), and the matrix view."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output length along one axis: ``(size + 2P - dilation*(F-1) - 1) // S + 1``."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def _windows(
    xp: np.ndarray, out_hw: tuple[int, int], kernel_hw: tuple[int, int], stride: int, dilation: int
) -> np.ndarray:
    """A read-only view of every receptive field: (N, C, H, W) -> (N, C, Ho, Wo, R, S)."""
    sn, sc, sh, sw = xp.strides
    shape = (*xp.shape[:2], *out_hw, *kernel_hw)
    strides = (sn, sc, sh * stride, sw * stride, sh * dilation, sw * dilation)
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def _pad(x: np.ndarray, padding: int) -> np.ndarray:
    """Zero-pad the two spatial axes of (N, C, H, W) by ``padding`` on every side."""
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> np.ndarray:
    """Cross-correlation, as every deep-learning library calls "convolution".

    ``y[n, k, i, j] = b[k] + sum_{c, r, s} x[n, c, i*S + r*D, j*S + s*D] * w[k, c, r, s]``

    Args:
        x: input, (N, C, H, W).
        weight: filters, (K, C, R, S).
        bias: one number per filter, (K,), or None.
        stride: step between receptive fields.
        padding: zeros added on every side.
        dilation: spacing between kernel taps.

    Returns:
        The feature maps, (N, K, Ho, Wo).
    """
    _, C, R, S = weight.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"Expected x of shape (N, {C}, H, W), received shape {x.shape}")
    Ho = conv_output_size(x.shape[2], R, stride, padding, dilation)
    Wo = conv_output_size(x.shape[3], S, stride, padding, dilation)
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"Kernel {R}x{S} (dilation={dilation}) does not fit input {x.shape[2:]} with padding={padding}"
        )
    cols = _windows(_pad(x, padding), (Ho, Wo), (R, S), stride, dilation)  # (N, C, Ho, Wo, R, S)
    y = np.tensordot(cols, weight, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, K)
    y = y.transpose(0, 3, 1, 2)  # (N, K, Ho, Wo)
    if bias is not None:
        y = y + bias[None, :, None, None]
    return np.ascontiguousarray(y)


def dilate(g: np.ndarray, stride: int) -> np.ndarray:
    """Insert ``stride - 1`` zeros between neighbouring cells of (N, K, H, W): undoes the stride."""
    if stride == 1:
        return g
    N, K, H, W = g.shape
    out = np.zeros((N, K, (H - 1) * stride + 1, (W - 1) * stride + 1), dtype=g.dtype)
    out[:, :, ::stride, ::stride] = g
    return out


def conv2d_backward_input(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_hw: tuple[int, int],
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> np.ndarray:
    """dL/dx of :func:`conv2d`: a *full* convolution of dL/dy with the 180°-flipped kernel.

    Step by step: (1) dilate dL/dy by the stride, (2) pad it by the effective kernel size
    minus one on every side (a "full" convolution), (3) cross-correlate with the kernel
    flipped 180° and with its in/out channels swapped, (4) add the rows/columns the forward
    pass never reached (zero gradient) and crop the forward padding.

    Args:
        grad_out: dL/dy, (N, K, Ho, Wo).
        weight: the forward filters, (K, C, R, S).
        input_hw: (H, W) of the forward input, before padding.
        stride: forward stride.
        padding: forward padding.
        dilation: forward dilation.

    Returns:
        dL/dx, (N, C, H, W).
    """
    R, S = weight.shape[2:]
    H, W = input_hw
    er, es = dilation * (R - 1) + 1, dilation * (S - 1) + 1  # effective kernel extent
    g = dilate(grad_out, stride)  # (N, K, (Ho-1)*S+1, (Wo-1)*S+1)
    g = np.pad(g, ((0, 0), (0, 0), (er - 1, er - 1), (es - 1, es - 1)))  # full convolution
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, K, R, S)
    dxp = conv2d(g, flipped, dilation=dilation)  # (N, C, (Ho-1)*S+er, (Wo-1)*S+es)
    rem_h = H + 2 * padding - dxp.shape[2]  # rows the last receptive field did not reach
    rem_w = W + 2 * padding - dxp.shape[3]
    dxp = np.pad(dxp, ((0, 0), (0, 0), (0, rem_h), (0, rem_w)))  # (N, C, H+2P, W+2P)
    return np.ascontiguousarray(dxp[:, :, padding : padding + H, padding : padding + W])


def conv2d_backward_weight(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel_hw: tuple[int, int],
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> np.ndarray:
    """dL/dw of :func:`conv2d`: each tap's gradient is dL/dy correlated with the input it saw.

    Args:
        x: the forward input, (N, C, H, W).
        grad_out: dL/dy, (N, K, Ho, Wo).
        kernel_hw: (R, S).
        stride: forward stride.
        padding: forward padding.
        dilation: forward dilation.

    Returns:
        dL/dw, (K, C, R, S).
    """
    Ho, Wo = grad_out.shape[2:]
    cols = _windows(_pad(x, padding), (Ho, Wo), kernel_hw, stride, dilation)  # (N, C, Ho, Wo, R, S)
    return np.tensordot(grad_out, cols, axes=([0, 2, 3], [0, 2, 3]))  # (K, C, R, S)


def conv2d_backward_bias(grad_out: np.ndarray) -> np.ndarray:
    """dL/db of :func:`conv2d`: each bias touched every output cell of its map, (N, K, Ho, Wo) -> (K,)."""
    return grad_out.sum(axis=(0, 2, 3))


def conv_transpose2d(
    x: np.ndarray, weight: np.ndarray, stride: int = 1, padding: int = 0, dilation: int = 1
) -> np.ndarray:
    """Transposed convolution: the backward pass of :func:`conv2d` used as a forward pass.

    Args:
        x: input, (N, C_in, H, W).
        weight: filters in PyTorch's transposed layout, (C_in, C_out, R, S).
        stride: stride of the convolution being transposed.
        padding: padding of the convolution being transposed.
        dilation: dilation of the convolution being transposed.

    Returns:
        (N, C_out, (H-1)*stride - 2*padding + dilation*(R-1) + 1, likewise for W).
    """
    R, S = weight.shape[2:]
    Ho = (x.shape[2] - 1) * stride - 2 * padding + dilation * (R - 1) + 1
    Wo = (x.shape[3] - 1) * stride - 2 * padding + dilation * (S - 1) + 1
    return conv2d_backward_input(x, weight, (Ho, Wo), stride, padding, dilation)


def conv_transpose2d_backward(
    x: np.ndarray,
    weight: np.ndarray,
    grad_out: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_transpose2d`: swapping forward and backward once more.

    Returns:
        (dL/dx of shape (N, C_in, H, W), dL/dw of shape (C_in, C_out, R, S)).
    """
    R, S = weight.shape[2:]
    dx = conv2d(grad_out, weight, stride=stride, padding=padding, dilation=dilation)
    dw = conv2d_backward_weight(grad_out, x, (R, S), stride, padding, dilation)
    return dx, dw


def conv_matrix(kernel: np.ndarray, input_shape: tuple[int, int]) -> np.ndarray:
    """The matrix C with ``C @ x.ravel() == conv2d(x, kernel).ravel()`` (valid, stride 1).

    Row ``i*Wo + j`` holds the kernel laid over the input at output cell (i, j): for a 3x3
    kernel on a 4x4 input C is 4x16, and ``C.T`` is the transposed convolution.

    Args:
        kernel: (R, S).
        input_shape: (H, W).

    Returns:
        C, (Ho*Wo, H*W).
    """
    R, S = kernel.shape
    H, W = input_shape
    Ho, Wo = H - R + 1, W - S + 1
    C = np.zeros((Ho * Wo, H * W), dtype=kernel.dtype)
    for i in range(Ho):
        for j in range(Wo):
            patch = np.zeros((H, W), dtype=kernel.dtype)
            patch[i : i + R, j : j + S] = kernel
            C[i * Wo + j] = patch.ravel()
    return C


def conv_param_count(
    kernel_size: int, in_channels: int, out_channels: int, bias: bool = True
) -> int:
    """Learnable numbers in a conv layer: ``(F*F*D1 + 1) * K`` (K filters of F*F*D1 weights plus a bias)."""
    return (kernel_size * kernel_size * in_channels + int(bias)) * out_channels


def conv_flops(
    kernel_size: int, in_channels: int, out_channels: int, out_h: int, out_w: int
) -> int:
    """FLOPs of a conv layer's forward pass, counting a multiply-add as 2 FLOPs.

    ``2 * F*F*D1 * K * W2*H2``: each of the K*W2*H2 outputs is a dot product of length
    F*F*D1. Bias additions are not counted (the slides' ``(F*F*D1 + 1)*W2*H2*D2`` counts
    multiply-adds plus the bias instead; see :func:`conv_macs`).
    """
    return 2 * kernel_size * kernel_size * in_channels * out_channels * out_h * out_w


def conv_macs(kernel_size: int, in_channels: int, out_channels: int, out_h: int, out_w: int) -> int:
    """Multiply-adds plus bias additions, the slides' count: ``(F*F*D1 + 1) * W2*H2*D2``."""
    return (kernel_size * kernel_size * in_channels + 1) * out_h * out_w * out_channels
