"""A small convolutional highway network for CIFAR-sized images (Srivastava, Greff &
Schmidhuber 2015, "Training very deep networks"): y = T(x)·H(x) + (1 − T(x))·x."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from cnnlab.layers.blocks import HighwayConv2d
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


class HighwayCNN(Classifier):
    """3x3 conv stem, then stages of highway conv layers with 2x2 max-pools between.

    A highway layer keeps its width, so each later stage opens with a 3x3 conv that
    widens the maps. The gates start closed (bias ``gate_bias`` < 0): at init each
    layer mostly carries its input, which is what lets deep highway stacks train.
    No count is published for this exact stack; the paper's CIFAR nets are deeper.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        widths: channels of each stage.
        depth: highway layers per stage.
        gate_bias: initial bias of every transform gate (the paper uses -1 to -3).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        depth: int = 2,
        gate_bias: float = -2.0,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.min_size = 2 ** (len(widths) - 1)  # one 2x2 pool between stages
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))  # (B, C, H/2, W/2)
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            layers += [HighwayConv2d(width, gate_bias=gate_bias) for _ in range(depth)]
            channels = width
        self.features = nn.Sequential(*layers)  # (B, widths[-1], H/4, W/4) for 3 stages
        self.num_features = channels
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.num_features, num_classes)
        )


@register_model(
    "highway_cnn",
    input_shape=(3, 32, 32),
    paper="Srivastava et al. 2015",
    year=2015,
    test_input_shape=(3, 4, 4),  # the minimum: two 2x2 pools leave 1x1 maps
)
def highway_cnn(**kwargs: Any) -> HighwayCNN:
    return HighwayCNN(**kwargs)
