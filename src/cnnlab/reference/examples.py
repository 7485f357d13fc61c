"""The worked examples from the course notes, as functions that return the numbers."""

from __future__ import annotations

import numpy as np

from cnnlab.reference.conv import conv2d, conv_matrix, conv_param_count, conv_transpose2d
from cnnlab.reference.pool import max_pool2d

POOL_IMAGE = np.array([[1, 2, 5, 3], [3, 0, 1, 2], [2, 1, 3, 4], [1, 1, 2, 0]], dtype=np.float64)


def max_pool_example() -> np.ndarray:
    """2x2 max pooling (stride 2) of the notes' 4x4 image: returns [[3, 5], [2, 4]]."""
    y, _ = max_pool2d(POOL_IMAGE[None, None], kernel_size=2)
    return y[0, 0]


def conv_4x3_example(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The 2x2-kernel convolution of a 4x3 image [[a, b, c], ..., [j, k, l]] with [[α, β], [γ, δ]].

    The notes write the top-left output as ``a*α + b*β + d*γ + e*δ``; the result is 3x2.

    Args:
        image: (4, 3).
        kernel: (2, 2).

    Returns:
        (3, 2) valid convolution.
    """
    if image.shape != (4, 3) or kernel.shape != (2, 2):
        raise ValueError(
            f"Expected a 4x3 image and a 2x2 kernel, received {image.shape} and {kernel.shape}"
        )
    return conv2d(image[None, None], kernel[None, None])[0, 0]


def conv_4x3_symbolic(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The notes' formula for :func:`conv_4x3_example`, written out cell by cell."""
    a, b, c, d, e, f, g, h, i, j, k, l = image.ravel()  # noqa: E741 (the notes' letters)
    al, be, ga, de = kernel.ravel()  # α, β, γ, δ
    return np.array(
        [
            [a * al + b * be + d * ga + e * de, b * al + c * be + e * ga + f * de],
            [d * al + e * be + g * ga + h * de, e * al + f * be + h * ga + i * de],
            [g * al + h * be + j * ga + k * de, h * al + i * be + k * ga + l * de],
        ]
    )


def conv_matrix_example(kernel: np.ndarray | None = None) -> np.ndarray:
    """The appendix's 4x16 matrix C of a 3x3 kernel on a 4x4 input (default kernel: 1..9)."""
    w = np.arange(1.0, 10.0).reshape(3, 3) if kernel is None else kernel
    return conv_matrix(w, (4, 4))


def transposed_conv_example(kernel: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transposed convolution of a 2x2 map with a 3x3 kernel, two ways: ``C.T @ y`` and directly.

    Returns:
        (via the matrix, via :func:`conv_transpose2d`), both (4, 4) and equal.
    """
    via_matrix = (conv_matrix(kernel, (4, 4)).T @ y.ravel()).reshape(4, 4)
    direct = conv_transpose2d(y[None, None], kernel[None, None])[0, 0]
    return via_matrix, direct


def filter_params_example() -> int:
    """One 3x3 filter over 3 input channels plus its bias: 3*3*3 + 1 = 28 parameters."""
    return conv_param_count(kernel_size=3, in_channels=3, out_channels=1)
