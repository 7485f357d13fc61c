"""DeepLab v3 (Chen, Papandreou, Schroff & Adam 2017, "Rethinking atrous convolution for
semantic image segmentation"): a backbone's last feature maps go through Atrous Spatial
Pyramid Pooling (ASPP), parallel branches that see the same maps at several scales,
then a 1x1 classifier and a bilinear upsampling to the input size.

ASPP's branches: a 1x1 conv, three 3x3 convs with dilation (atrous) rates, and an
image-level branch (global average pool, 1x1 conv, broadcast back), each followed
by BatchNorm and ReLU; their concatenation is fused by another 1x1 conv. The paper
uses rates (6, 12, 18) on 33x33 maps (513x513 crops at output stride 16). A 3x3
conv whose rate nears the map's side sees mostly padding, degenerating to its centre
tap (the paper's Section 3.3), so the rates here scale with the maps: the default
(2, 4, 6) is the paper's divided by 3, for the 8x8 maps that the default
``resnet_mini`` backbone (stride 8, the paper's denser output stride) gives a 64x64
image; the widest branch still spans 13 pixels. The backbone's strides are used as
they are: no stride is turned into dilation inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.base import check_num_classes
from cnnlab.models.pyramid import FeaturePyramid, feature_pyramid
from cnnlab.models.registry import register_model
from cnnlab.models.segmenter import Segmenter


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1
) -> nn.Sequential:
    # 'Same' padding for an odd kernel: dilation * (k - 1) / 2. No bias before BatchNorm.
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pool -> 1x1 conv-BN-ReLU -> broadcast.

    Its BatchNorm sees one value per image and channel, so training needs batches
    of at least 2 (as in the paper and torchvision).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = conv_bn_relu(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x)  # (B, C, 1, 1)
        y = self.conv(y)  # (B, C_out, 1, 1)
        return y.expand(-1, -1, *x.shape[-2:])  # (B, C_out, h, w)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3, Section 3.3).

    Args:
        in_channels: channels of the backbone maps.
        out_channels: channels of each branch and of the fused output (paper: 256).
        rates: dilation of each 3x3 branch (paper: 6, 12, 18 at output stride 16).
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int]) -> None:
        super().__init__()
        if not rates or min(rates) < 1:
            raise ConfigError(f"Expected dilation rates >= 1, received rates={list(rates)}")
        self.branches = nn.ModuleList(
            [
                conv_bn_relu(in_channels, out_channels),
                *(conv_bn_relu(in_channels, out_channels, 3, rate) for rate in rates),
                ImagePooling(in_channels, out_channels),
            ]
        )
        self.project = conv_bn_relu(len(self.branches) * out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([branch(x) for branch in self.branches], dim=1)  # (B, n * C_out, h, w)
        return self.project(y)  # (B, C_out, h, w)


class DeepLabV3(Segmenter):
    """Backbone -> ASPP -> 1x1 classifier -> bilinear upsampling to the input size.

    Args:
        in_channels: image channels.
        num_classes: classes scored at every pixel.
        backbone: registered model whose body gives the feature maps.
        backbone_args: extra arguments for the backbone's builder.
        aspp_channels: channels of every ASPP branch (paper: 256).
        rates: dilation rates of the three 3x3 ASPP branches.
    """

    features: FeaturePyramid

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        backbone: str = "resnet_mini",
        backbone_args: dict[str, Any] | None = None,
        aspp_channels: int = 64,
        rates: Sequence[int] = (2, 4, 6),
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.aspp_channels = aspp_channels
        self.features = feature_pyramid(backbone, in_channels, 1, backbone_args)
        self.stride = self.features.strides[-1]
        self.aspp = ASPP(self.features.channels[-1], aspp_channels, rates)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Conv2d(self.aspp_channels, num_classes, 1)

    def forward_head(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.aspp(features[-1])  # (B, aspp_channels, H / s, W / s)
        x = self.head(x)  # (B, num_classes, H / s, W / s)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@register_model(
    "deeplab",
    input_shape=(1, 64, 64),
    paper="Chen et al. 2017",
    year=2017,
    test_input_shape=(1, 32, 32),
    task="segment",
)
def deeplab(**kwargs: Any) -> DeepLabV3:
    return DeepLabV3(**kwargs)
