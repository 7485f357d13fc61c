"""EfficientNet-B0 (Tan & Le 2019, "EfficientNet: rethinking model scaling for
convolutional neural networks"), laid out as torchvision lays it out so that its
parameter count matches ``torchvision.models.efficientnet_b0``.

Stochastic depth (the paper's drop-connect on the residual branch, rate 0.2) is
omitted: it changes training only, not the architecture or the parameter count.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model

MIN_SIZE = 32  # five stride-2 stages: 32x32 is the smallest input with 1x1 last maps


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    """kxk conv ('same' padding for stride 1, no bias) + BN."""
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2,
        groups=groups,
        bias=False,
    )
    return [conv, nn.BatchNorm2d(out_channels)]


class SqueezeExcitation(nn.Module):
    """EfficientNet's SE: the hidden width comes from the block's *input* channels.

    ``cnnlab.layers.SqueezeExcitation`` divides the gated channels and uses ReLU; here
    the hidden width is ``max(1, in_channels // 4)`` (SE ratio 0.25 of the block input)
    and the activation is SiLU, so the published count needs its own class.

    Args:
        channels: gated channels (the expanded width).
        hidden: width of the squeeze layer.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.SiLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)  # (B, C, 1, 1)
        s = self.act(self.fc1(s))
        return x * torch.sigmoid(self.fc2(s))


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand, kxk depthwise, SE, linear 1x1 project.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: depthwise window (3 or 5).
        stride: depthwise stride.
        expand_ratio: hidden width = in_channels * expand_ratio (1 skips the expansion).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [*conv_bn(in_channels, hidden, 1), nn.SiLU(inplace=True)]
        layers += [*conv_bn(hidden, hidden, kernel_size, stride, groups=hidden), nn.SiLU()]
        layers.append(SqueezeExcitation(hidden, max(1, in_channels // 4)))
        layers += conv_bn(hidden, out_channels, 1)  # linear bottleneck: no activation
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


# (expand_ratio, kernel_size, first stride, out_channels, repeats); Tan & Le 2019, Table 1.
EFFICIENTNET_B0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


class EfficientNet(Classifier):
    """3x3/2 stem to 32, seven MBConv stages, 1x1 conv to 1280, pool, dropout, linear.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        dropout: drop probability before the classifier (0.2 for B0).
    """

    min_size = MIN_SIZE

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        layers: list[nn.Module] = [*conv_bn(in_channels, 32, 3, stride=2), nn.SiLU(inplace=True)]
        channels = 32
        for expand_ratio, kernel_size, stride, out_channels, repeats in EFFICIENTNET_B0_STAGES:
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                layers.append(
                    MBConv(channels, out_channels, kernel_size, block_stride, expand_ratio)
                )
                channels = out_channels
        self.num_features = 4 * channels  # 1280
        layers += [*conv_bn(channels, self.num_features, 1), nn.SiLU(inplace=True)]
        self.features = nn.Sequential(*layers)  # (B, 1280, H/32, W/32)
        self.head = self._make_head(num_classes)
        init_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(self.dropout),
            nn.Linear(self.num_features, num_classes),
        )
        init_weights(head)
        return head


def init_weights(model: nn.Module) -> None:
    """torchvision's EfficientNet init: He (fan-out) convs, BN to identity, uniform linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


@register_model(
    "efficientnet_b0",
    input_shape=(3, 224, 224),
    paper="Tan & Le 2019",
    year=2019,
    test_input_shape=(3, MIN_SIZE, MIN_SIZE),
)
def efficientnet_b0(**kwargs: Any) -> EfficientNet:
    return EfficientNet(**kwargs)
