"""ResNet-20/32/44/56/110 for CIFAR (He, Zhang, Ren & Sun 2016, "Deep residual
learning for image recognition", section 4.2): 6n + 2 layers, 16/32/64 maps, and
parameter-free identity shortcuts that zero-pad the new channels (option A)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.core.errors import ConfigError
from cnnlab.layers.blocks import conv3x3
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model
from cnnlab.models.resnet import init_weights


class PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the extra channels; no weights."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, ceil(H/s), ceil(W/s))
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))  # (B, C_out, ...)


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; the (padded) input is added before the last ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = PadShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(Classifier):
    """3x3 conv (16) -> 3 stages of n blocks (16, 32, 64 maps) -> global pool -> linear.

    At 32x32 the stages run at 32, 16 and 8 pixels. Any input of at least 8x8 works.

    Args:
        depth: 6n + 2 layers (20, 32, 44, 56, 110, ...).
        in_channels: image channels.
        num_classes: outputs of the last layer.
    """

    min_size = 8

    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"Expected depth = 6n + 2 with n >= 1, received depth={depth}")
        self.in_channels, self.num_classes = in_channels, num_classes
        n = (depth - 2) // 6
        layers: list[nn.Module] = [
            conv3x3(in_channels, 16),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        ]
        channels = 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(n):
                layers.append(CifarBasicBlock(channels, width, 2 if i > 0 and j == 0 else 1))
                channels = width
        self.features = nn.Sequential(*layers)  # (B, 64, H/4, W/4)
        self.head = self._make_head(num_classes)
        init_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def _register(name: str) -> Any:
    return register_model(
        name,
        input_shape=(3, 32, 32),
        paper="He et al. 2016",
        year=2016,
        test_input_shape=(3, 8, 8),
    )


@_register("resnet20")
def resnet20(**kwargs: Any) -> CifarResNet:
    return CifarResNet(20, **kwargs)


@_register("resnet32")
def resnet32(**kwargs: Any) -> CifarResNet:
    return CifarResNet(32, **kwargs)


@_register("resnet44")
def resnet44(**kwargs: Any) -> CifarResNet:
    return CifarResNet(44, **kwargs)


@_register("resnet56")
def resnet56(**kwargs: Any) -> CifarResNet:
    return CifarResNet(56, **kwargs)


@_register("resnet110")
def resnet110(**kwargs: Any) -> CifarResNet:
    return CifarResNet(110, **kwargs)
