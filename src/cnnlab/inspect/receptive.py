"""Where one feature-map cell looks: its receptive field on the input, found by
backpropagating from that cell through the real model, and a conv cell's arithmetic.

The **region** is structural: which input pixels can change the cell at all, whatever the
input. It comes from one backward pass through the model made linear and positive for the
pass: activations act as the identity, max pooling as average pooling over the same
windows, and convolution, linear and batch-norm weights by their absolute values. Every
path from a pixel to the cell then carries a positive product, so no path is blocked (a
dead ReLU, a max pool's losing inputs) and none cancels another, and the gradient is
non-zero exactly on the pixels some path reaches. That follows the model's real graph:
residual branches, concatenations, padding at the borders, dilation, strides. For a plain
stack it equals the textbook recursion of ``cnnlab summary`` (rf_l = rf_{l-1} + (k - 1) x
jump); for residual networks it is the union of the branches' fields.

The **effective** map is the real gradient of the cell for the given input (Luo et al.
2016, "Understanding the effective receptive field"): usually concentrated near the
centre of the region.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.visualize import capture

_IDENTITY = {
    F.relu, F.relu6, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid,
    F.leaky_relu, F.hardtanh, F.softplus, F.sigmoid, F.tanh, torch.relu, torch.sigmoid,
    torch.tanh, torch.relu_, F.relu_, torch.Tensor.relu, torch.Tensor.sigmoid, torch.Tensor.tanh,
}  # fmt: skip
_MAX_TO_AVG: dict[Callable[..., Any], Callable[..., Any]] = {
    F.adaptive_max_pool1d: F.adaptive_avg_pool1d,
    F.adaptive_max_pool2d: F.adaptive_avg_pool2d,
}


class _LinearPositive(TorchFunctionMode):
    """The function mode of the structural pass (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in _IDENTITY:
            return args[0]
        if func in _MAX_TO_AVG:
            return _MAX_TO_AVG[func](args[0], args[1])
        if func in (
            F.max_pool1d,
            F.max_pool2d,
            F.max_pool1d_with_indices,
            F.max_pool2d_with_indices,
        ):
            return _avg_pool(func, *args, **kwargs)
        if func in (F.conv1d, F.conv2d, F.conv_transpose1d, F.conv_transpose2d, F.linear):
            weight = kwargs.pop("weight", None)
            rest = list(args)
            if weight is None:
                weight = rest.pop(1)
            return func(rest[0], weight.abs(), *rest[1:], **kwargs)
        if func is F.batch_norm:
            return _positive_batch_norm(*args, **kwargs)
        return func(*args, **kwargs)


def _avg_pool(func: Callable[..., Any], x: torch.Tensor, kernel_size: Any, stride: Any = None,
              padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
              return_indices: bool = False) -> torch.Tensor:  # fmt: skip
    one_d = func in (F.max_pool1d, F.max_pool1d_with_indices)
    dims = 1 if one_d else 2
    if any(d != 1 for d in torch.nn.modules.utils._ntuple(dims)(dilation)):
        raise ConfigError("the structural receptive field does not handle dilated max pooling")
    pool = F.avg_pool1d if one_d else F.avg_pool2d
    stride = kernel_size if stride is None or stride == [] else stride
    return pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad=True)


def _positive_batch_norm(x: torch.Tensor, running_mean: Any, running_var: Any,
                         weight: Any = None, bias: Any = None, training: bool = False,
                         momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:  # fmt: skip
    w = weight.abs() if weight is not None else None
    return F.batch_norm(x, running_mean, running_var, w, bias, False, momentum, eps)


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _cell_gradient(
    model: nn.Module, x: torch.Tensor, layer: str, cell: tuple[int, ...], channel: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """d(cell of ``layer``)/d(input) (1, C, ...) and the layer's output (1, K, ...)."""
    x = x.detach().clone().requires_grad_(True)
    with capture(model, [layer]) as maps:
        model(x)
    out = maps[layer]
    if out.dim() != len(cell) + 2:
        raise ShapeMismatchError(
            f"layer {layer!r} outputs {tuple(out.shape[1:])}; a cell needs "
            f"{out.dim() - 2} coordinates, received {list(cell)}"
        )
    for axis, (i, n) in enumerate(zip(cell, out.shape[2:], strict=True)):
        if not 0 <= i < n:
            raise ShapeMismatchError(
                f"cell {list(cell)} lies outside layer {layer!r}'s map of size "
                f"{tuple(out.shape[2:])} (axis {axis})"
            )
    picked = out[(0, slice(None), *cell)]  # type: ignore[index]
    value = picked.sum() if channel is None else picked[channel]
    (grad,) = torch.autograd.grad(value, x)
    return grad, out.detach()


def receptive_field(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    cell: tuple[int, ...],
    channel: int | None = None,
) -> dict[str, Any]:
    """The input region cell ``cell`` of ``layer`` depends on, for one input ``x`` (1, C, ...).

    Returns ``box`` (per spatial axis, [first, last] input indices, inclusive, clipped to
    the input), ``size`` (per axis, last - first + 1), ``mask`` (bool (H, W) or (L,): the
    structural region), ``effective`` (|real gradient| summed over input channels, scaled
    to max 1) and ``layer_shape``.

    Raises:
        ShapeMismatchError: ``x`` is not one input, or the cell is outside the map.
    """
    if x.dim() < 3 or x.shape[0] != 1:
        raise ShapeMismatchError(f"Expected one input (1, C, ...), received {tuple(x.shape)}")
    with _evaluating(model):
        real, out = _cell_gradient(model, x, layer, cell, channel)
        with _LinearPositive():
            structural, _ = _cell_gradient(model, x, layer, cell, channel)
    mask = structural[0].abs().sum(0) > 0
    box, size = [], []
    for axis in range(mask.dim()):
        others = tuple(a for a in range(mask.dim()) if a != axis)
        hit = mask.any(dim=others) if others else mask
        where = torch.nonzero(hit).flatten()
        first, last = (int(where[0]), int(where[-1])) if len(where) else (-1, -1)
        box.append([first, last])
        size.append(last - first + 1 if len(where) else 0)
    effective = real[0].abs().sum(0)
    effective = effective / effective.max().clamp_min(1e-30)
    return {"box": box, "size": size, "mask": mask, "effective": effective,
            "layer_shape": list(out.shape[1:])}  # fmt: skip


def conv_arithmetic(
    model: nn.Module, x: torch.Tensor, layer: str, cell: tuple[int, int], channel: int
) -> dict[str, Any]:
    """The lecture's arithmetic of one conv output: kernel . input patch + bias.

    ``layer`` must be an ``nn.Conv2d`` (groups 1). Returns the patch of the layer's input
    (in_channels, kh, kw; zeros where padding), the kernel, the bias, the sum of products
    and the output the model computed, which equals it up to float rounding.
    """
    conv = dict(model.named_modules()).get(layer)
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ConfigError(
            f"Expected a Conv2d with groups=1 at {layer!r}, received {type(conv).__name__}"
        )
    seen: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen["input"], seen["output"] = inputs[0].detach(), output.detach()

    handle = conv.register_forward_hook(hook)
    try:
        with _evaluating(model), torch.no_grad():
            model(x)
    finally:
        handle.remove()
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    (dh, dw), padding = conv.dilation, conv.padding
    if isinstance(padding, str):
        raise ConfigError(f"conv_arithmetic needs numeric padding, {layer!r} has {padding!r}")
    ph, pw = padding
    i, j = cell
    h, w = seen["output"].shape[-2:]
    if not (0 <= i < h and 0 <= j < w and 0 <= channel < conv.out_channels):
        raise ShapeMismatchError(
            f"Expected a cell inside {layer!r}'s ({conv.out_channels}, {h}, {w}) output, "
            f"received channel {channel}, cell {list(cell)}"
        )
    padded = F.pad(seen["input"][0], (pw, pw, ph, ph))
    rows = torch.arange(kh) * dh + i * sh
    cols = torch.arange(kw) * dw + j * sw
    patch = padded[:, rows][:, :, cols]
    kernel = conv.weight[channel].detach()
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    total = float((patch.double() * kernel.double()).sum()) + bias
    return {"patch": patch, "kernel": kernel, "bias": bias, "sum": total,
            "output": float(seen["output"][0, channel, i, j])}  # fmt: skip
