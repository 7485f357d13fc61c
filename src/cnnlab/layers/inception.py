"""Inception module (Szegedy et al. 2015, GoogLeNet): naive and 1×1-reduced variants."""

from __future__ import annotations

import torch
from torch import nn


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2), nn.ReLU()
    )


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: 1×1, 3×3, 5×5 and 3×3 max-pool.

    With ``naive=False`` (GoogLeNet) 1×1 convolutions reduce the channels before the
    3×3 and 5×5 convolutions and project the pooled branch, which keeps the
    cost down. With ``naive=True`` there are no reductions (``ch3x3red`` and
    ``ch5x5red`` are ignored) and the pool branch passes ``in_channels`` through,
    so ``pool_proj`` is ignored too.

    Args:
        in_channels: input channels.
        ch1x1: channels of the 1×1 branch.
        ch3x3red: 1×1 reduction before the 3×3 conv.
        ch3x3: channels of the 3×3 branch.
        ch5x5red: 1×1 reduction before the 5×5 conv.
        ch5x5: channels of the 5×5 branch.
        pool_proj: 1×1 projection after the max-pool.
        naive: build the naive module.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        naive: bool = False,
    ) -> None:
        super().__init__()
        pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.branch1 = _conv_relu(in_channels, ch1x1, 1)
        if naive:
            self.branch2: nn.Module = _conv_relu(in_channels, ch3x3, 3)
            self.branch3: nn.Module = _conv_relu(in_channels, ch5x5, 5)
            self.branch4: nn.Module = pool
            self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels
        else:
            self.branch2 = nn.Sequential(
                _conv_relu(in_channels, ch3x3red, 1), _conv_relu(ch3x3red, ch3x3, 3)
            )
            self.branch3 = nn.Sequential(
                _conv_relu(in_channels, ch5x5red, 1), _conv_relu(ch5x5red, ch5x5, 5)
            )
            self.branch4 = nn.Sequential(pool, _conv_relu(in_channels, pool_proj, 1))
            self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)  # (B, out_channels, H, W)
