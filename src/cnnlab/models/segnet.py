"""SegNet (Badrinarayanan, Kendall & Cipolla 2017, "SegNet: a deep convolutional
encoder-decoder architecture for image segmentation"): a VGG-style encoder whose 2x2
max-pools remember where each maximum came from, and a mirrored decoder that
upsamples by putting every value back at its remembered position (zeros elsewhere)
and then convolves the sparse map into a dense one.

The remembered positions are exactly what max-pool's backward pass uses to route
gradients to the winners, so the decoder learns no upsampling weights at all. The
layer table follows the authors' Caffe model (SegNet-Tutorial, segnet_train.prototxt):
conv-BN-ReLU everywhere, the decoder's last conv of each block narrowing to the next
block's width, and a final 3x3 conv to the class scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.base import check_num_classes
from cnnlab.models.registry import register_model
from cnnlab.models.segmenter import Segmenter

# The paper's encoder: VGG-16's 13 convs, in blocks of (2, 2, 3, 3, 3).
PAPER_WIDTHS = (64, 128, 256, 512, 512)
PAPER_CONVS = (2, 2, 3, 3, 3)


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm after it cancels any constant shift (Caffe's SegNet
    # keeps the biases; they are the only parameters this layout lacks).
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def encoder_block(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """``convs`` conv-BN-ReLU layers; the first one sets the width."""
    layers = conv_bn_relu(in_channels, out_channels)
    for _ in range(convs - 1):
        layers += conv_bn_relu(out_channels, out_channels)
    return nn.Sequential(*layers)


def decoder_block(in_channels: int, out_channels: int | None, convs: int) -> nn.Sequential:
    """The mirror of an encoder block: the last conv narrows to ``out_channels`` (None:
    no last conv; the head's classifier takes its place)."""
    layers: list[nn.Module] = []
    for _ in range(convs - 1):
        layers += conv_bn_relu(in_channels, in_channels)
    if out_channels is not None:
        layers += conv_bn_relu(in_channels, out_channels)
    return nn.Sequential(*layers)


class SegNet(Segmenter):
    """Encoder blocks with index-keeping 2x2 max-pools, mirrored by unpool + conv blocks.

    H and W must be multiples of ``2 ** len(widths)``.

    Args:
        in_channels: image channels.
        num_classes: classes scored at every pixel.
        widths: channels of each encoder block (the paper: 64, 128, 256, 512, 512).
        convs: 3x3 convs in each block (the paper: 2, 2, 3, 3, 3).
    """

    features: nn.ModuleList

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        widths: Sequence[int] = (16, 32, 64, 128),
        convs: Sequence[int] = (2, 2, 3, 3),
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if len(widths) != len(convs) or not widths or min(convs) < 1:
            raise ConfigError(
                f"Expected one conv count >= 1 per block, received widths={list(widths)} "
                f"and convs={list(convs)}"
            )
        self.in_channels, self.num_classes = in_channels, num_classes
        self.stride = 2 ** len(widths)
        self.widths = list(widths)
        ins = [in_channels, *widths[:-1]]
        self.features = nn.ModuleList(
            encoder_block(c_in, c, n) for c_in, c, n in zip(ins, widths, convs, strict=True)
        )
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        # Deepest first, each block narrowing to the next finer width; in the finest
        # one the head (a 3x3 conv to the class scores, as in the Caffe model) does it.
        finer = [None, *widths[:-1]]
        self.decoder = nn.ModuleList(
            decoder_block(c, c_out, n)
            for c, c_out, n in reversed(list(zip(widths, finer, convs, strict=True)))
        )
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Conv2d(self.widths[0], num_classes, 3, padding=1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each encoder block's output before its pool, finest first: strides 1, 2, 4, ..."""
        self.check_input(x)
        maps = []
        for i, block in enumerate(self.features):
            if i > 0:
                x, _ = self.pool(x)  # (B, C, H / 2^i, W / 2^i); the head finds the winners
            x = block(x)
            maps.append(x)
        return maps

    def forward_head(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Unpool with each level's max-pool winners, then convolve; deepest level first.

        The winners are recomputed here from the encoder maps (a 2x2 max is cheap), so
        that the body's output stays a plain feature pyramid.
        """
        pooled = [self.pool(x) for x in features]  # (values, winners) per level
        x = pooled[-1][0]  # (B, C_last, H / 2^L, W / 2^L): the encoder's output
        for block, (_, winners) in zip(self.decoder, reversed(pooled), strict=True):
            x = self.unpool(x, winners)  # sparse: each value back at its winner's place
            x = block(x)
        return self.head(x)  # (B, num_classes, H, W)


@register_model(
    "segnet",
    input_shape=(1, 64, 64),
    paper="Badrinarayanan et al. 2017",
    year=2017,
    test_input_shape=(1, 32, 32),
    task="segment",
)
def segnet(**kwargs: Any) -> SegNet:
    return SegNet(**kwargs)
