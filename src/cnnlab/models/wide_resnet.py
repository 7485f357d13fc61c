"""Wide residual networks WRN-d-k for CIFAR (Zagoruyko & Komodakis 2016, "Wide residual
networks"): pre-activation basic blocks, 16k/32k/64k maps, (d - 4) / 6 blocks a stage."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers.blocks import conv1x1, conv3x3
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model
from cnnlab.models.resnet import init_weights


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3 (-dropout) -BN-ReLU-conv3x3, plus the input.

    Where the shape changes the shortcut is a 1x1 conv of the pre-activated input,
    as in the authors' code.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv1x1(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.dropout(self.relu(self.bn2(out)))
        out = self.conv2(out)
        return out + identity


class WideResNet(Classifier):
    """3x3 conv (16) -> 3 stages of wide blocks -> BN-ReLU -> global pool -> linear.

    Args:
        depth: d = 6n + 4 layers.
        widen_factor: k, the width multiplier of every stage.
        in_channels: image channels.
        num_classes: outputs of the last layer.
        dropout: between the two convs of each block (paper: 0.3 for some runs).
    """

    min_size = 8  # two stride-2 stages leave 2x2 maps

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        in_channels: int = 3,
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"Expected depth = 6n + 4 with n >= 1, received depth={depth}")
        self.in_channels, self.num_classes = in_channels, num_classes
        n = (depth - 4) // 6
        layers: list[nn.Module] = [conv3x3(in_channels, 16)]
        channels = 16
        for i, width in enumerate((16 * widen_factor, 32 * widen_factor, 64 * widen_factor)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(WideBasicBlock(channels, width, stride, dropout))
                channels = width
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)  # (B, 64k, H/4, W/4)
        self.num_features = channels
        self.head = self._make_head(num_classes)
        init_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.num_features, num_classes)
        )


def _register(name: str) -> Any:
    return register_model(
        name,
        input_shape=(3, 32, 32),
        paper="Zagoruyko & Komodakis 2016",
        year=2016,
        test_input_shape=(3, 8, 8),
    )


@_register("wrn28_10")
def wrn28_10(**kwargs: Any) -> WideResNet:
    return WideResNet(28, 10, **kwargs)


@_register("wrn40_4")
def wrn40_4(**kwargs: Any) -> WideResNet:
    return WideResNet(40, 4, **kwargs)
