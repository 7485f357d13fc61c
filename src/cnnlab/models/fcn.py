"""Fully convolutional networks (Long, Shelhamer & Darrell 2015, "Fully convolutional
networks for semantic segmentation"): a 1x1 "score" conv turns a classifier's feature
maps into coarse class maps, which are upsampled back to the image. FCN-32s scores
only the last (stride-32) maps; FCN-8s also scores the two finer levels and fuses
coarse to fine by "upsample x2, add" before the final x8 upsampling.

The backbone is any zoo classifier with an ``nn.Sequential`` body (see
:mod:`cnnlab.models.pyramid`), and "32" and "8" become its own strides: FCN-32s
scores the last level and FCN-8s the last three. On ResNet-18 those are the paper's
strides 8, 16 and 32; on the default ``resnet_mini`` (one stride-2 stem pool, then
stages at strides 2, 4 and 8) they are 2, 4 and 8, which suits 64x64 inputs: the
coarsest scores are 8x8 rather than the 2x2 that a stride-32 body would leave.
H and W must be multiples of the backbone's total stride (8 for ``resnet_mini``);
for 28x28 images use a two-stage ``resnet_mini`` (stride 4) or pad to 32.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers.conv import SubPixelUpsample
from cnnlab.models.base import check_num_classes
from cnnlab.models.pyramid import FeaturePyramid, feature_pyramid
from cnnlab.models.registry import register_model
from cnnlab.models.segmenter import Segmenter

UPSAMPLE_KINDS = ("bilinear", "transposed", "subpixel")


def bilinear_kernel(size: int) -> torch.Tensor:
    """(size, size) weights of bilinear interpolation, as the FCN code initialises its
    "deconvolution" layers: a tent 1 - |i - centre| / factor in each direction."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    tent = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    return tent[:, None] * tent[None, :]


def upsample(kind: str, channels: int, scale: int) -> nn.Module:
    """A module that enlarges H and W by ``scale`` and keeps ``channels``.

    "bilinear" has no weights. "transposed" is the paper's learned upsampling: a
    transposed conv (kernel 2*scale, stride scale) that starts as bilinear
    interpolation, channel by channel. "subpixel" is Shi et al. 2016's conv to
    scale^2 x the channels plus a pixel shuffle.
    """
    if kind == "bilinear":
        return nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
    if kind == "subpixel":
        return SubPixelUpsample(channels, channels, scale)
    odd = scale % 2
    # Output side = (n - 1) * scale - 2 * padding + kernel = n * scale, for odd scales too.
    layer = nn.ConvTranspose2d(
        channels, channels, 2 * scale - odd, stride=scale, padding=(scale - odd) // 2
    )
    with torch.no_grad():
        layer.weight.zero_()
        for c in range(channels):
            layer.weight[c, c] = bilinear_kernel(layer.kernel_size[0])
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


class FCNHead(nn.Module):
    """Score each level with a 1x1 conv, fuse coarse to fine, upsample to the image.

    Args:
        channels: channels of each level, finest first.
        strides: stride of each level, finest first.
        num_classes: classes scored.
        kind: upsampling, one of ``UPSAMPLE_KINDS``.
    """

    def __init__(
        self, channels: Sequence[int], strides: Sequence[int], num_classes: int, kind: str
    ) -> None:
        super().__init__()
        self.score = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in channels)
        ratios = [coarse // fine for fine, coarse in itertools.pairwise(strides)]
        self.fuse = nn.ModuleList(upsample(kind, num_classes, r) for r in reversed(ratios))
        self.final = upsample(kind, num_classes, strides[0])

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        scores = [score(x) for score, x in zip(self.score, levels, strict=True)]
        x = scores[-1]  # (B, K, H / s_last, W / s_last)
        for up, skip in zip(self.fuse, reversed(scores[:-1]), strict=True):
            x = up(x) + skip  # one level finer
        return self.final(x)  # (B, K, H, W)


class FCN(Segmenter):
    """A backbone's coarsest ``num_levels`` levels, scored and fused (FCN-8s: 3, FCN-32s: 1).

    Args:
        num_levels: levels scored: 1 for FCN-32s, 2 for FCN-16s, 3 for FCN-8s.
        in_channels: image channels.
        num_classes: classes scored at every pixel.
        backbone: registered model whose body gives the pyramid.
        backbone_args: extra arguments for the backbone's builder.
        upsample: "bilinear" (fixed), "transposed" (the paper's: learned, starting as
            bilinear) or "subpixel" (learned, Shi et al. 2016).
    """

    features: FeaturePyramid

    def __init__(
        self,
        num_levels: int,
        in_channels: int = 1,
        num_classes: int = 2,
        backbone: str = "resnet_mini",
        backbone_args: dict[str, Any] | None = None,
        upsample: str = "bilinear",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if upsample not in UPSAMPLE_KINDS:
            raise ConfigError(
                f"Expected upsample in {UPSAMPLE_KINDS}, received upsample={upsample!r}"
            )
        self.in_channels, self.num_classes, self.upsample = in_channels, num_classes, upsample
        self.features = feature_pyramid(backbone, in_channels, num_levels, backbone_args)
        self.stride = self.features.strides[-1]
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return FCNHead(self.features.channels, self.features.strides, num_classes, self.upsample)

    def forward_head(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Scores fused coarse to fine; ``size`` is implied by the finest level's stride."""
        return self.head(features)  # (B, num_classes, H, W)


def _register(name: str) -> Any:
    return register_model(
        name,
        input_shape=(1, 64, 64),
        paper="Long et al. 2015",
        year=2015,
        test_input_shape=(1, 32, 32),
        task="segment",
    )


@_register("fcn32s")
def fcn32s(**kwargs: Any) -> FCN:
    return FCN(1, **kwargs)


@_register("fcn8s")
def fcn8s(**kwargs: Any) -> FCN:
    return FCN(3, **kwargs)
