"""Convolution arithmetic: output sizes, 'same' padding, parameter and MAC counts."""

from __future__ import annotations

import math
from collections.abc import Sequence

from cnnlab.core.errors import ConfigError

IntOrTuple = int | Sequence[int]


def expand(value: IntOrTuple, ndim: int, name: str) -> tuple[int, ...]:
    """Repeat an int ``ndim`` times, or check a tuple has ``ndim`` entries.

    Args:
        value: an int or a sequence of ints.
        ndim: number of spatial dimensions.
        name: argument name, echoed in errors.

    Returns:
        A tuple of ``ndim`` ints.
    """
    if isinstance(value, int):
        return (value,) * ndim
    out = tuple(value)
    if len(out) != ndim or not all(isinstance(v, int) for v in out):
        raise ConfigError(f"Expected {name} to be an int or {ndim} ints, received {name}={value!r}")
    return out


def check_positive(name: str, values: Sequence[int], received: object = None) -> None:
    """Raise ConfigError unless every value is > 0; ``received`` is what the user passed."""
    if any(v <= 0 for v in values):
        shown = (
            received if received is not None else values[0] if len(values) == 1 else tuple(values)
        )
        raise ConfigError(f"Expected {name} > 0, received {name}={shown}")


def check_non_negative(name: str, values: Sequence[int], received: object = None) -> None:
    """Raise ConfigError unless every value is >= 0; ``received`` is what the user passed."""
    if any(v < 0 for v in values):
        shown = (
            received if received is not None else values[0] if len(values) == 1 else tuple(values)
        )
        raise ConfigError(f"Expected {name} >= 0, received {name}={shown}")


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    """Raise ConfigError unless groups > 0 divides both channel counts."""
    check_positive("groups", [groups])
    if in_channels % groups or out_channels % groups:
        raise ConfigError(
            f"Expected in_channels and out_channels divisible by groups, received "
            f"in_channels={in_channels}, out_channels={out_channels}, groups={groups}"
        )


def _output_size_1d(w: int, k: int, s: int, p: int, d: int, strict: bool) -> int:
    k_eff = d * (k - 1) + 1  # a dilated kernel spans this many input positions
    span = w - k_eff + 2 * p
    if span < 0:
        raise ConfigError(
            f"Expected the effective kernel size {k_eff} <= padded input size {w + 2 * p}, "
            f"received size={w}, kernel_size={k}, padding={p}, dilation={d}"
        )
    if strict and span % s != 0:
        raise ConfigError(
            f"({w} - {k_eff} + 2*{p})/{s} + 1 = {span / s + 1:g} is not an integer: "
            f"stride={s} does not tile size={w} with kernel_size={k}, padding={p}, dilation={d}"
        )
    return span // s + 1


def conv_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    strict: bool = False,
) -> int | tuple[int, ...]:
    """Output size of a convolution or pooling window, W2 = floor((W1 + 2P - D(F-1) - 1)/S) + 1.

    Args:
        size: input size W1, an int or one int per spatial dimension.
        kernel_size: window size F.
        stride: step S.
        padding: zeros added on each side, P.
        dilation: spacing D between kernel taps.
        strict: if True, raise when (W1 - F_eff + 2P) is not divisible by S, i.e. when
            the window does not tile the input exactly (the seed's W=10, F=3, S=2 case).

    Returns:
        An int if ``size`` is an int, else a tuple with one size per dimension.

    Raises:
        ConfigError: non-positive kernel/stride/dilation, negative padding, a kernel
            larger than the padded input, or (strict) a fractional output size.
    """
    ndim = 1 if isinstance(size, int) else len(tuple(size))
    sizes = expand(size, ndim, "size")
    ks = expand(kernel_size, ndim, "kernel_size")
    ss = expand(stride, ndim, "stride")
    ps = expand(padding, ndim, "padding")
    ds = expand(dilation, ndim, "dilation")
    check_positive("kernel_size", ks, kernel_size)
    check_positive("stride", ss, stride)
    check_positive("dilation", ds, dilation)
    check_non_negative("padding", ps, padding)
    out = tuple(
        _output_size_1d(w, k, s, p, d, strict)
        for w, k, s, p, d in zip(sizes, ks, ss, ps, ds, strict=True)
    )
    return out[0] if isinstance(size, int) else out


def same_padding(
    size: int, kernel_size: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """TensorFlow/Keras 'same' padding for one dimension: output size = ceil(size / stride).

    When the total padding is odd, the extra zero goes after (right/bottom), as in
    TensorFlow; this is why 'same' with stride > 1 or an even kernel is asymmetric.

    Args:
        size: input size.
        kernel_size: window size.
        stride: step.
        dilation: spacing between kernel taps.

    Returns:
        (before, after) padding.
    """
    check_positive("size", [size])
    check_positive("kernel_size", [kernel_size])
    check_positive("stride", [stride])
    check_positive("dilation", [dilation])
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    before = total // 2
    return before, total - before


def conv_params(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrTuple,
    bias: bool = True,
    groups: int = 1,
) -> int:
    """Number of learnable parameters of a convolution: (F·F·D1/groups + 1)·K.

    Args:
        in_channels: input depth D1.
        out_channels: number of filters K.
        kernel_size: F, an int (square) or one int per spatial dimension.
        bias: whether each filter has a bias.
        groups: channel groups; each filter sees in_channels / groups channels.

    Returns:
        The parameter count.
    """
    ks = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
    check_groups(in_channels, out_channels, groups)
    weights = math.prod(ks) * (in_channels // groups) * out_channels
    return weights + (out_channels if bias else 0)


def conv_macs(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrTuple,
    output_size: IntOrTuple,
    groups: int = 1,
) -> int:
    """Multiply-accumulates of one convolution on one sample (bias adds not counted).

    Convention: one multiply-add = 1 MAC = 2 FLOPs.

    Args:
        in_channels: input depth.
        out_channels: number of filters.
        kernel_size: an int (square) or one int per spatial dimension.
        output_size: output spatial size, an int (square) or one int per dimension.
        groups: channel groups.

    Returns:
        MACs per sample.
    """
    ks = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
    outs = (output_size,) * len(ks) if isinstance(output_size, int) else tuple(output_size)
    per_position = math.prod(ks) * (in_channels // groups) * out_channels
    return per_position * math.prod(outs)
