"""PSPNet (Zhao, Shi, Qi, Wang & Jia 2017, "Pyramid scene parsing network"): a backbone's
last feature maps are average-pooled into 1x1, 2x2, 3x3 and 6x6 grids of regions, each
grid is reduced by a 1x1 conv, upsampled back and concatenated with the maps, so that
every pixel's classifier also sees the whole scene and its quadrants (the pyramid
pooling module, PPM). A 3x3 conv, dropout and a 1x1 classifier follow, and the scores
are upsampled bilinearly to the input size.

As in the paper, each of the N pyramid branches keeps 1/N of the channels, so the
concatenation has twice the backbone's channels. The paper's dilated ResNet stops
at stride 8; so does the default ``resnet_mini`` backbone (8x8 maps for 64x64
images, enough for the 6x6 bins). The auxiliary loss on an earlier stage is left out.
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


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    # No bias before BatchNorm: its mean subtraction would cancel it.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PyramidPooling(nn.Module):
    """The pyramid pooling module (Zhao et al. 2017, Section 3.2, Figure 3c).

    Output: the input maps concatenated with one upsampled branch per bin, so
    ``in_channels + len(bins) * (in_channels // len(bins))`` channels. The 1x1 bin's
    BatchNorm sees one value per image and channel: training needs batches of 2 or more.

    Args:
        in_channels: channels of the backbone maps.
        bins: side of each pooled grid (paper: 1, 2, 3, 6).
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        if not bins or min(bins) < 1 or in_channels < len(bins):
            raise ConfigError(
                f"Expected bins >= 1 and at most in_channels={in_channels} of them, "
                f"received bins={list(bins)}"
            )
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), *conv_bn_relu(in_channels, reduced))
            for b in bins
        )
        self.out_channels = in_channels + len(bins) * reduced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [stage(x) for stage in self.stages]  # (B, C / n, b, b) per bin b
        up = [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pooled]
        return torch.cat([x, *up], dim=1)  # (B, C + n * (C / n), h, w)


class PSPNet(Segmenter):
    """Backbone -> pyramid pooling -> 3x3 conv -> dropout -> 1x1 classifier -> upsample.

    Args:
        in_channels: image channels.
        num_classes: classes scored at every pixel.
        backbone: registered model whose body gives the feature maps.
        backbone_args: extra arguments for the backbone's builder.
        bins: sides of the pooled grids.
        channels: output channels of the 3x3 conv after the PPM (paper: 512).
        dropout: dropout before the classifier (paper: 0.1).
    """

    features: FeaturePyramid

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        backbone: str = "resnet_mini",
        backbone_args: dict[str, Any] | None = None,
        bins: Sequence[int] = (1, 2, 3, 6),
        channels: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes, self.channels = in_channels, num_classes, channels
        self.features = feature_pyramid(backbone, in_channels, 1, backbone_args)
        self.stride = self.features.strides[-1]
        self.ppm = PyramidPooling(self.features.channels[-1], bins)
        self.bottleneck = conv_bn_relu(self.ppm.out_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Conv2d(self.channels, num_classes, 1)

    def forward_head(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.ppm(features[-1])  # (B, 2C, H / s, W / s)
        x = self.bottleneck(x)  # (B, channels, H / s, W / s)
        x = self.dropout(x)
        x = self.head(x)  # (B, num_classes, H / s, W / s)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@register_model(
    "pspnet",
    input_shape=(1, 64, 64),
    paper="Zhao et al. 2017",
    year=2017,
    test_input_shape=(1, 32, 32),
    task="segment",
)
def pspnet(**kwargs: Any) -> PSPNet:
    return PSPNet(**kwargs)
