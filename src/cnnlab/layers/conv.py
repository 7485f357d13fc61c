"""Convolutions with Keras-style 'same' padding for any stride, plus separable and sub-pixel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.layers.arithmetic import (
    IntOrTuple,
    check_groups,
    check_non_negative,
    check_positive,
    expand,
    same_padding,
)

_TORCH_CONVS: dict[int, Callable[..., nn.Conv1d | nn.Conv2d | nn.Conv3d]] = {
    1: nn.Conv1d,
    2: nn.Conv2d,
    3: nn.Conv3d,
}
_PAD_MODES = {"zeros": "constant", "replicate": "replicate", "reflect": "reflect"}
_PAD_STRINGS = ("valid", "same")

# Transposed convolution is PyTorch's own: nothing to add over it.
ConvTranspose2d = nn.ConvTranspose2d


def check_input(x: torch.Tensor, in_channels: int, ndim: int, layer: str) -> None:
    """Raise ShapeMismatchError unless ``x`` is (B, in_channels, *spatial) with ``ndim`` spatial dims."""
    expected = "(B, C=" + str(in_channels) + "".join(f", D{i + 1}" for i in range(ndim)) + ")"
    if x.dim() != ndim + 2 or x.shape[1] != in_channels:
        raise ShapeMismatchError(
            f"{layer} expected input of shape {expected}, received shape {tuple(x.shape)}"
        )


class Conv(nn.Module):
    """An N-d convolution whose 'same' padding works for any stride and kernel size.

    PyTorch's ``padding='same'`` refuses stride > 1. Here 'same' follows
    TensorFlow/Keras: output size = ceil(input / stride), the padding is computed
    from the input size at call time and, when odd, the extra element goes after.
    All padding is applied with an explicit ``F.pad`` (so replicate/reflect work
    the same way) followed by a convolution with padding 0.

    Args:
        ndim: number of spatial dimensions (1, 2 or 3).
        in_channels: input channels.
        out_channels: number of filters.
        kernel_size: window size, an int or one per spatial dimension.
        stride: step of the window.
        padding: 'valid' (none), 'same', or an int / tuple padded on both sides.
        dilation: spacing between kernel taps.
        groups: channel groups (in_channels for a depthwise convolution).
        bias: whether each filter has a bias.
        padding_mode: 'zeros', 'replicate' (repeat the edge) or 'reflect'.
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: str | IntOrTuple = "valid",
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if ndim not in _TORCH_CONVS:
            raise ConfigError(f"Expected ndim in (1, 2, 3), received ndim={ndim}")
        check_positive("in_channels", [in_channels])
        check_positive("out_channels", [out_channels])
        self.kernel_size = expand(kernel_size, ndim, "kernel_size")
        self.stride = expand(stride, ndim, "stride")
        self.dilation = expand(dilation, ndim, "dilation")
        check_positive("kernel_size", self.kernel_size, kernel_size)
        check_positive("stride", self.stride, stride)
        check_positive("dilation", self.dilation, dilation)
        self.padding = self._parse_padding(padding, ndim)
        if padding_mode not in _PAD_MODES:
            raise ConfigError(
                f"Expected padding_mode in {tuple(_PAD_MODES)}, received padding_mode={padding_mode!r}"
            )
        check_groups(in_channels, out_channels, groups)
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.padding_mode = padding_mode
        self.conv = _TORCH_CONVS[ndim](
            in_channels,
            out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=0,
            dilation=self.dilation,
            groups=groups,
            bias=bias,
        )

    @property
    def weight(self) -> torch.Tensor:
        """The kernel, (out_channels, in_channels / groups, *kernel_size)."""
        return self.conv.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The per-filter bias, or None."""
        return self.conv.bias

    @staticmethod
    def _parse_padding(padding: str | IntOrTuple, ndim: int) -> str | tuple[int, ...]:
        if isinstance(padding, str):
            if padding not in _PAD_STRINGS:
                raise ConfigError(
                    f"Expected padding in {_PAD_STRINGS} or ints, received padding={padding!r}"
                )
            return padding
        pads = expand(padding, ndim, "padding")
        check_non_negative("padding", pads, padding)
        return pads

    def pad_amounts(self, spatial: tuple[int, ...]) -> list[tuple[int, int]]:
        """(before, after) padding per spatial dimension for an input of this size."""
        if self.padding == "valid":
            return [(0, 0)] * self.ndim
        if self.padding == "same":
            return [
                same_padding(n, k, s, d)
                for n, k, s, d in zip(
                    spatial, self.kernel_size, self.stride, self.dilation, strict=True
                )
            ]
        assert not isinstance(self.padding, str)
        return [(p, p) for p in self.padding]

    def _check_fits(self, spatial: tuple[int, ...], pads: list[tuple[int, int]]) -> None:
        for i, (n, (lo, hi), k, d) in enumerate(
            zip(spatial, pads, self.kernel_size, self.dilation, strict=True)
        ):
            k_eff = d * (k - 1) + 1
            if k_eff > n + lo + hi:
                raise ShapeMismatchError(
                    f"Expected effective kernel size {k_eff} <= padded input size {n + lo + hi} "
                    f"in spatial dim {i}, received input size {n}, padding ({lo}, {hi}), "
                    f"kernel_size={k}, dilation={d}"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.ndim, type(self).__name__)
        spatial = tuple(x.shape[2:])
        pads = self.pad_amounts(spatial)
        self._check_fits(spatial, pads)
        flat = [v for lo_hi in reversed(pads) for v in lo_hi]  # F.pad wants the last dim first
        x = F.pad(x, flat, mode=_PAD_MODES[self.padding_mode]) if any(flat) else x
        return self.conv(x)


class Conv1d(Conv):
    """1-D :class:`Conv`; input (B, C, L)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, **kwargs: Any
    ) -> None:
        super().__init__(1, in_channels, out_channels, kernel_size, **kwargs)


class Conv2d(Conv):
    """2-D :class:`Conv`; input (B, C, H, W)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, **kwargs: Any
    ) -> None:
        super().__init__(2, in_channels, out_channels, kernel_size, **kwargs)


class Conv3d(Conv):
    """3-D :class:`Conv`; input (B, C, D, H, W)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, **kwargs: Any
    ) -> None:
        super().__init__(3, in_channels, out_channels, kernel_size, **kwargs)


class SeparableConv2d(nn.Module):
    """Depthwise-separable convolution (Xception, MobileNet): depthwise k×k then pointwise 1×1.

    The depthwise step filters each channel on its own (groups=in_channels); the
    pointwise step mixes channels. As in Keras, only the pointwise step has a bias.

    Args:
        in_channels: input channels.
        out_channels: output channels of the pointwise step.
        kernel_size: depthwise window size.
        stride: depthwise stride.
        padding: as in :class:`Conv`.
        dilation: depthwise dilation.
        depth_multiplier: depthwise filters per input channel.
        bias: bias on the pointwise step.
        padding_mode: as in :class:`Conv`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: str | IntOrTuple = "valid",
        dilation: IntOrTuple = 1,
        depth_multiplier: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        check_positive("depth_multiplier", [depth_multiplier])
        mid = in_channels * depth_multiplier
        self.depthwise = Conv2d(
            in_channels,
            mid,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
            padding_mode=padding_mode,
        )
        self.pointwise = Conv2d(mid, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(x)
        return self.pointwise(x)


class SubPixelUpsample(nn.Module):
    """Sub-pixel upsampling (Shi et al. 2016): conv to C·r² channels, then pixel shuffle.

    Pixel shuffle rearranges (B, C·r², H, W) into (B, C, r·H, r·W): for r = 2 an
    H×H×C map becomes 2H×2H×C/4, with no interpolation and no checkerboard.

    Args:
        in_channels: input channels.
        out_channels: channels after upsampling.
        scale: upsampling factor r.
        kernel_size: window of the conv before the shuffle ('same' padding).
    """

    def __init__(
        self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3
    ) -> None:
        super().__init__()
        check_positive("scale", [scale])
        self.conv = Conv2d(in_channels, out_channels * scale * scale, kernel_size, padding="same")
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C·r², H, W)
        return self.shuffle(x)  # (B, C, r·H, r·W)
