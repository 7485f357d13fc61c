"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: convolutional networks for biomedical
image segmentation"): a contracting path of double 3x3 convs and 2x2 max-pools, and an
expanding path that upsamples, concatenates the same-resolution encoder maps and
convolves again, so that fine detail skips past the bottleneck.

Two departures from the paper, both as in the widely used milesial/Pytorch-UNet:
the 3x3 convs are padded (the paper's are 'valid' and crop the skip maps, so its
572x572 input gives a 388x388 output), so the output is the input's size; and an
optional BatchNorm (on by default) follows each conv. Padding changes no weight: with
``base_channels=64`` and ``batch_norm=False`` the parameters are the paper's.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers.conv import SubPixelUpsample
from cnnlab.models.base import check_num_classes
from cnnlab.models.registry import register_model
from cnnlab.models.segmenter import Segmenter

UPSAMPLE_KINDS = ("transposed", "subpixel")


class DoubleConv(nn.Sequential):
    """(3x3 conv -> [BN] -> ReLU) x 2, padded so H and W are kept."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            # No bias before BatchNorm: its shift would be cancelled by the mean subtraction.
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Up(nn.Module):
    """Upsample x2 halving the channels, concatenate the skip map, then a DoubleConv.

    ``upsample="transposed"`` is the paper's 2x2 "up-convolution" (stride 2);
    ``"subpixel"`` is Shi et al. 2016's sub-pixel convolution: a 3x3 conv to 4x the
    channels, then a pixel shuffle into a 2x larger map (no checkerboard overlap).
    """

    def __init__(
        self, in_channels: int, out_channels: int, batch_norm: bool, upsample: str
    ) -> None:
        super().__init__()
        self.up: nn.Module
        if upsample == "transposed":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        else:
            self.up = SubPixelUpsample(in_channels, in_channels // 2, scale=2)
        self.conv = DoubleConv(in_channels // 2 + out_channels, out_channels, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, C/2, 2h, 2w)
        x = torch.cat([skip, x], dim=1)  # (B, C/2 + C_skip, 2h, 2w)
        return self.conv(x)


class UNet(Segmenter):
    """U-Net: ``depth`` max-pool levels down, ``depth`` upsampling levels back up.

    Level i of the contracting path has ``base_channels * 2**i`` channels, so the
    bottleneck of the default depth 4 has 16x the base (1024 at base 64, the paper's).
    H and W must be multiples of ``2**depth``.

    Args:
        in_channels: image channels.
        num_classes: classes scored at every pixel.
        base_channels: channels of the first level (64 in the paper; 16 trains on a CPU).
        depth: number of 2x2 max-pools (4 in the paper).
        batch_norm: BatchNorm after every 3x3 conv.
        upsample: "transposed" (the paper's up-conv) or "subpixel" (Shi et al. 2016).
    """

    features: nn.ModuleList

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 16,
        depth: int = 4,
        batch_norm: bool = True,
        upsample: str = "transposed",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if upsample not in UPSAMPLE_KINDS:
            raise ConfigError(
                f"Expected upsample in {UPSAMPLE_KINDS}, received upsample={upsample!r}"
            )
        if depth < 1 or base_channels < 1:
            raise ConfigError(
                f"Expected depth >= 1 and base_channels >= 1, received depth={depth}, "
                f"base_channels={base_channels}"
            )
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_channels, self.stride = base_channels, 2**depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        down: list[nn.Module] = [DoubleConv(in_channels, widths[0], batch_norm)]
        for c_in, c_out in itertools.pairwise(widths):
            down.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out, batch_norm)))
        self.features = nn.ModuleList(down)
        self.decoder = nn.ModuleList(  # deepest first: 16 base -> 8 base, ..., 2 base -> base
            Up(c_in, c_out, batch_norm, upsample)
            for c_in, c_out in itertools.pairwise(reversed(widths))
        )
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Conv2d(self.base_channels, num_classes, 1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The contracting path: maps at strides 1, 2, ..., 2**depth, finest first."""
        self.check_input(x)
        maps = []
        for level in self.features:
            x = level(x)  # (B, base * 2^i, H / 2^i, W / 2^i)
            maps.append(x)
        return maps

    def forward_head(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The expanding path; ``size`` is implied by the finest map."""
        x = features[-1]  # (B, base * 2^depth, H / 2^depth, W / 2^depth)
        for up, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            x = up(x, skip)  # one level finer, half the channels
        return self.head(x)  # (B, num_classes, H, W)


@register_model(
    "unet",
    input_shape=(1, 64, 64),
    paper="Ronneberger et al. 2015",
    year=2015,
    test_input_shape=(1, 32, 32),
    task="segment",
)
def unet(**kwargs: Any) -> UNet:
    return UNet(**kwargs)
