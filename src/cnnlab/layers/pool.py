"""Pooling: spatial pooling is PyTorch's; global pooling and pooling across channels are ours."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.layers.arithmetic import check_positive

# Spatial max/average and adaptive pooling need nothing beyond PyTorch's modules.
MaxPool2d = nn.MaxPool2d
AvgPool2d = nn.AvgPool2d
AdaptiveMaxPool2d = nn.AdaptiveMaxPool2d
AdaptiveAvgPool2d = nn.AdaptiveAvgPool2d

_MODES = ("max", "avg")
# timm's names: "avgmax" is the mean of the two, "catavgmax" their concatenation (2C).
GLOBAL_POOL_MODES = ("avg", "max", "avgmax", "catavgmax")


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ConfigError(f"Expected mode in {_MODES}, received mode={mode!r}")


class GlobalPool2d(nn.Module):
    """Pool all of H and W: (B, C, H, W) -> (B, C), or (B, C, 1, 1) if keepdim.

    Max pooling answers "is this feature anywhere?", which suits multi-label heads
    whose objects cover a small part of the image; average pooling dilutes them.

    Args:
        mode: 'avg', 'max', 'avgmax' (their mean) or 'catavgmax' (both, 2C channels).
        keepdim: keep the two spatial dims as size 1.
    """

    def __init__(self, mode: str = "avg", keepdim: bool = False) -> None:
        super().__init__()
        if mode not in GLOBAL_POOL_MODES:
            raise ConfigError(f"Expected mode in {GLOBAL_POOL_MODES}, received mode={mode!r}")
        self.mode = mode
        self.keepdim = keepdim

    @property
    def multiplier(self) -> int:
        """Output channels per input channel: 2 for 'catavgmax', else 1."""
        return 2 if self.mode == "catavgmax" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ShapeMismatchError(
                f"GlobalPool2d expected input of shape (B, C, H, W), received shape {tuple(x.shape)}"
            )
        if self.mode == "max":
            return x.amax(dim=(2, 3), keepdim=self.keepdim)
        if self.mode == "avg":
            return x.mean(dim=(2, 3), keepdim=self.keepdim)
        avg = x.mean(dim=(2, 3), keepdim=self.keepdim)
        most = x.amax(dim=(2, 3), keepdim=self.keepdim)
        if self.mode == "avgmax":
            return 0.5 * (avg + most)
        return torch.cat([avg, most], dim=1)  # (B, 2C)


class ChannelPool(nn.Module):
    """Pooling along the channel (depth) dimension instead of the spatial ones.

    Windows of ``kernel_size`` consecutive channels, taken every ``stride``
    channels, are reduced by max or mean: (B, C, *spatial) -> (B, C', *spatial)
    with C' = (C - kernel_size) // stride + 1. Spatial size is unchanged.

    Args:
        kernel_size: channels per window.
        stride: step between windows; defaults to kernel_size (non-overlapping).
        mode: 'max' or 'avg'.
    """

    def __init__(self, kernel_size: int, stride: int | None = None, mode: str = "max") -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        check_positive("kernel_size", [self.kernel_size])
        check_positive("stride", [self.stride])
        _check_mode(mode)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] < self.kernel_size:
            raise ShapeMismatchError(
                f"ChannelPool expected input (B, C >= kernel_size={self.kernel_size}, ...), "
                f"received shape {tuple(x.shape)}"
            )
        windows = x.unfold(1, self.kernel_size, self.stride)  # (B, C', *spatial, kernel_size)
        if self.mode == "max":
            return windows.amax(dim=-1)
        return windows.mean(dim=-1)
