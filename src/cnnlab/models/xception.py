"""Xception (Chollet 2017, "Xception: deep learning with depthwise separable convolutions",
Figure 5), laid out as Keras Applications lays it out so that the counts match
``keras.applications.Xception``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.layers.conv import SeparableConv2d
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model

BN_EPS = 1e-3  # Keras' BatchNormalization default


class XceptionBlock(nn.Module):
    """[ReLU ->] SeparableConv 3x3 -> BN, once per width, added to a shortcut.

    With ``downsample`` the block ends in a 3x3/2 max-pool and the shortcut is a
    strided 1x1 conv + BN (H and W halve); otherwise the shortcut is the input.

    Args:
        in_channels: input channels.
        widths: output channels of each separable conv.
        downsample: halve H and W.
        relu_first: start with a ReLU (False for the first block, which follows one).
    """

    def __init__(
        self, in_channels: int, widths: Sequence[int], downsample: bool, relu_first: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            if i > 0 or relu_first:
                layers.append(nn.ReLU(inplace=i > 0))  # not in place on the shortcut's input
            layers += [
                SeparableConv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width, eps=BN_EPS),
            ]
            channels = width
        self.skip: nn.Module = nn.Identity()
        if downsample:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))  # (B, width, H/2, W/2)
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=2, bias=False),
                nn.BatchNorm2d(channels, eps=BN_EPS),
            )
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + self.skip(x)


# Figure 5: (separable conv widths, downsample) per block; the entry flow's stem is apart.
Flow = list[tuple[tuple[int, ...], bool]]
ENTRY_FLOW: Flow = [((128, 128), True), ((256, 256), True), ((728, 728), True)]
MIDDLE_FLOW: Flow = [((728, 728, 728), False)] * 8
EXIT_FLOW: Flow = [((728, 1024), True)]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, bias=False),  # no padding
        nn.BatchNorm2d(out_channels, eps=BN_EPS),
        nn.ReLU(inplace=True),
    ]


def _sep_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        SeparableConv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels, eps=BN_EPS),
        nn.ReLU(inplace=True),
    ]


class Xception(Classifier):
    """Entry flow (stem + 3 blocks) -> middle flow (8 blocks) -> exit flow -> pool -> linear.

    At 299x299 the maps are 147 (stem), 74, 37, 19 (entry), 19 (middle) and 10 (exit).
    Keras refuses inputs under 71x71; the layers themselves run from 7x7 (1x1 maps).

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
    """

    min_size = 7  # two unpadded 3x3 convs, the first strided, must leave 1x1

    def __init__(self, in_channels: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        stem = nn.Sequential(*_conv_bn_relu(in_channels, 32, 2), *_conv_bn_relu(32, 64))
        layers: list[tuple[str, nn.Module]] = [("stem", stem)]  # (B, 64, H/2 - 3, W/2 - 3)
        channels = 64
        for i, (widths, downsample) in enumerate(ENTRY_FLOW + MIDDLE_FLOW + EXIT_FLOW):
            block = XceptionBlock(channels, widths, downsample, relu_first=i > 0)
            layers.append((f"block{i + 2}", block))
            channels = block.out_channels
        tail = nn.Sequential(*_sep_bn_relu(channels, 1536), *_sep_bn_relu(1536, 2048))
        layers.append(("block14", tail))
        self.features = nn.Sequential(OrderedDict(layers))  # (B, 2048, ~H/32, ~W/32)
        self.num_features = 2048
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.num_features, num_classes)
        )


@register_model(
    "xception",
    input_shape=(3, 299, 299),
    paper="Chollet 2017",
    year=2017,
    test_input_shape=(3, 7, 7),
)
def xception(**kwargs: Any) -> Xception:
    return Xception(**kwargs)
