"""SE-ResNet-50 (Hu, Shen, Albanie, Sun & Wu 2018, "Squeeze-and-excitation networks"):
ResNet-50 whose bottlenecks rescale their channels by a learned gate before the add."""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.layers.blocks import SqueezeExcitation
from cnnlab.models.registry import register_model
from cnnlab.models.resnet import RESNET_CONFIGS, Bottleneck, ResNet


class SEBottleneck(Bottleneck):
    """ResNet bottleneck with squeeze-and-excitation on the residual branch (paper, Fig. 3).

    The gate (reduction 16, the paper's default) scales the branch after the last BN,
    before the identity is added, so the shortcut stays an identity.

    Args:
        in_channels: input channels.
        width: channels of the 3x3 conv; the block outputs ``4 * width``.
        stride: stride of the 3x3 conv.
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__(in_channels, width, stride)
        self.se = SqueezeExcitation(width * self.expansion, reduction=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.se(out)  # (B, C, H, W) * (B, C, 1, 1)
        return self.relu(out + identity)


@register_model(
    "seresnet50",
    input_shape=(3, 224, 224),
    paper="Hu et al. 2018",
    year=2018,
    test_input_shape=(3, 32, 32),  # the minimum: 1x1 last maps
)
def seresnet50(**kwargs: Any) -> ResNet:
    """SE-ResNet-50: ResNet-50's stages (3, 4, 6, 3) built from SEBottleneck."""
    _, layers = RESNET_CONFIGS[50]
    return ResNet(SEBottleneck, layers, **kwargs)
