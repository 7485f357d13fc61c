"""Step-by-step text for small convolutions, poolings and conv backprop, every dot product written out."""

from __future__ import annotations

import numpy as np

from cnnlab.reference.conv import conv2d, conv2d_backward_input, conv2d_backward_weight
from cnnlab.reference.pool import max_pool2d


def parse_matrix(text: str) -> np.ndarray:
    """Read ``"1 2 5 3; 3 0 1 2"`` (rows split by ';' or newlines, numbers by spaces or commas).

    Raises:
        ValueError: if the text is empty, has a non-number, or rows of different lengths.
    """
    rows = [r.replace(",", " ").split() for r in text.replace("\n", ";").split(";")]
    rows = [r for r in rows if r]
    if not rows:
        raise ValueError(f"Expected rows like '1 2; 3 4', received {text!r}")
    if len({len(r) for r in rows}) != 1:
        raise ValueError(
            f"Expected rows of equal length, received lengths {[len(r) for r in rows]} in {text!r}"
        )
    try:
        return np.array([[float(v) for v in r] for r in rows])
    except ValueError as err:
        raise ValueError(f"Expected numbers only, received {text!r}") from err


def _num(v: float) -> str:
    """A number as a person writes it: 3 not 3.0, and at most 4 significant digits."""
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def _term(v: float) -> str:
    """A number ready to sit in ``a*b``: negatives get parentheses."""
    s = _num(v)
    return f"({s})" if s.startswith("-") else s


def format_matrix(m: np.ndarray, indent: str = "  ") -> str:
    """Rows of right-aligned numbers, one line per row."""
    cells = [[_num(v) for v in row] for row in m]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(indent + " ".join(c.rjust(width) for c in row) for row in cells)


def _dot_line(name: str, a: np.ndarray, b: np.ndarray) -> str:
    """``name = a1*b1 + a2*b2 + ... = total``."""
    terms = " + ".join(f"{_term(x)}*{_term(y)}" for x, y in zip(a.ravel(), b.ravel(), strict=True))
    return f"  {name} = {terms} = {_num(float(np.dot(a.ravel(), b.ravel())))}"


def _as_2d(m: np.ndarray, what: str) -> np.ndarray:
    """The user's matrix as float64, refusing anything that is not 2-D."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"Expected {what} as a 2-D matrix, received shape {m.shape}")
    return m


def explain_conv(image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0) -> str:
    """Explain a single-channel convolution (cross-correlation) cell by cell.

    Args:
        image: (H, W).
        kernel: (R, S).
        stride: step between receptive fields.
        padding: zeros added on every side.

    Returns:
        Text: the input, the kernel, one dot-product line per output cell, the output.
    """
    image, kernel = _as_2d(image, "image"), _as_2d(kernel, "kernel")
    R, S = kernel.shape
    y = conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)[0, 0]
    xp = np.pad(image, padding)
    lines = [
        f"Input ({image.shape[0]}x{image.shape[1]}):",
        format_matrix(image),
        f"Kernel ({R}x{S}):",
        format_matrix(kernel),
    ]
    if padding:
        lines += [f"Input with {padding} ring(s) of zero padding:", format_matrix(xp)]
    lines.append(f"Slide the kernel with stride {stride}; each output cell is a dot product:")
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            window = xp[i * stride : i * stride + R, j * stride : j * stride + S]
            lines.append(_dot_line(f"y[{i},{j}]", window, kernel))
    lines += [f"Output ({y.shape[0]}x{y.shape[1]}):", format_matrix(y)]
    return "\n".join(lines)


def explain_pool(image: np.ndarray, size: int = 2) -> str:
    """Explain max pooling with a ``size`` x ``size`` window and stride ``size``.

    Returns:
        Text: the input, each window's max and where it was (the position backprop routes
        the gradient to), and the output.
    """
    image = _as_2d(image, "image")
    y, argmax = max_pool2d(image[None, None], kernel_size=size)
    y, argmax = y[0, 0], argmax[0, 0]
    W = image.shape[1]
    lines = [
        f"Input ({image.shape[0]}x{W}):",
        format_matrix(image),
        f"Max over each {size}x{size} window, stride {size}:",
    ]
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            window = image[i * size : (i + 1) * size, j * size : (j + 1) * size]
            r, c = divmod(int(argmax[i, j]), W)
            values = ", ".join(_num(v) for v in window.ravel())
            lines.append(
                f"  y[{i},{j}] = max({values}) = {_num(y[i, j])}  (winner at row {r}, col {c})"
            )
    lines += [f"Output ({y.shape[0]}x{y.shape[1]}):", format_matrix(y)]
    lines.append("Backprop sends each output's gradient to its winner only; the other cells get 0.")
    return "\n".join(lines)


def explain_backprop(image: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray) -> str:
    """Explain the gradients of a valid, stride-1 convolution ``y = conv(image, kernel)``.

    dL/dimage is the *full* convolution of dL/dy with the kernel flipped 180°; dL/dkernel
    is the image cross-correlated with dL/dy.

    Args:
        image: (H, W).
        kernel: (R, S).
        grad_out: dL/dy, (H-R+1, W-S+1).

    Returns:
        Text with the flipped kernel, the zero-padded dL/dy, and every gradient cell's dot product.
    """
    image, kernel, g = (
        _as_2d(image, "image"),
        _as_2d(kernel, "kernel"),
        _as_2d(grad_out, "grad_out"),
    )
    R, S = kernel.shape
    out_shape = (image.shape[0] - R + 1, image.shape[1] - S + 1)
    if g.shape != out_shape:
        raise ValueError(
            f"Expected grad_out of shape {out_shape} (the output's), received {g.shape}"
        )
    flipped = kernel[::-1, ::-1]
    gp = np.pad(g, ((R - 1, R - 1), (S - 1, S - 1)))
    dx = conv2d_backward_input(g[None, None], kernel[None, None], image.shape)[0, 0]
    dw = conv2d_backward_weight(image[None, None], g[None, None], (R, S))[0, 0]
    lines = [
        "Input:",
        format_matrix(image),
        "Kernel:",
        format_matrix(kernel),
        "dL/dy (gradient at the output):",
        format_matrix(g),
    ]
    lines += [
        "Kernel flipped 180°:",
        format_matrix(flipped),
        f"dL/dy padded by {R - 1}x{S - 1} zeros (a full convolution):",
        format_matrix(gp),
    ]
    lines.append("dL/dx: slide the flipped kernel over the padded dL/dy:")
    for i in range(dx.shape[0]):
        for j in range(dx.shape[1]):
            lines.append(_dot_line(f"dx[{i},{j}]", gp[i : i + R, j : j + S], flipped))
    lines += ["dL/dx:", format_matrix(dx), "dL/dw: slide dL/dy over the input:"]
    for r in range(R):
        for s in range(S):
            lines.append(
                _dot_line(f"dw[{r},{s}]", image[r : r + g.shape[0], s : s + g.shape[1]], g)
            )
    lines += ["dL/dw:", format_matrix(dw), f"dL/db = sum of dL/dy = {_num(float(g.sum()))}"]
    return "\n".join(lines)
