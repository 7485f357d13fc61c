"""Keypoints from heatmaps by soft-argmax (Sun, Xiao, Wei, Liang & Wei 2018, "Integral
human pose regression"): a small conv net predicts one heatmap per keypoint at 1/4 of
the image resolution; a softmax turns each into a probability map and the keypoint is
its expected position. Unlike an argmax this is differentiable, so the net trains on
coordinates directly, and it is not limited to the heatmap's grid.

Coordinates follow ``keypoints_net`` (seed 003): the output (B, 2P) is x1, y1, x2, y2,
..., each in [-1, 1], with x = -1 at the left edge of the image and +1 at its right
edge (y: top and bottom). Pixel j spans [j, j + 1), so its centre is at
x = (2j + 1) / W - 1: the convention of ``F.grid_sample(..., align_corners=False)``
and of :mod:`cnnlab.data.affine`. Nouri's (p - 48) / 48 scaling of the 96x96 facial
keypoints is this convention for p measured from the image's left edge; coordinates
that put pixel centres at integers need 0.5 added first. A heatmap cell covers a
4x4 block of pixels and sits at that block's centre, so the same formula with the
heatmap's width gives its position.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model
from cnnlab.models.segmenter import check_divisible


def pixel_centres(
    n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Centres of ``n`` equal cells spanning [-1, 1]: (2j + 1) / n - 1 for j = 0 .. n - 1."""
    return (2 * torch.arange(n, device=device, dtype=dtype) + 1) / n - 1


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) under each softmax-normalised heatmap.

    Args:
        heatmaps: (B, P, h, w) unnormalised scores, one map per keypoint.

    Returns:
        (B, P, 2): x then y of each keypoint, in [-1, 1] (cell centres as above).
    """
    B, P, h, w = heatmaps.shape
    probs = heatmaps.flatten(2).softmax(-1).reshape(B, P, h, w)
    x = (probs.sum(2) * pixel_centres(w, probs.device, probs.dtype)).sum(-1)  # over columns
    y = (probs.sum(3) * pixel_centres(h, probs.device, probs.dtype)).sum(-1)  # over rows
    return torch.stack([x, y], dim=-1)


class SoftArgmax2d(nn.Module):
    """:func:`soft_argmax` as a layer: (B, P, h, w) -> (B, P, 2)."""

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return soft_argmax(heatmaps)


def conv_bn_relu(
    in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1
) -> list[nn.Module]:
    # No bias before BatchNorm: its mean subtraction would cancel it.
    conv = nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def check_even(num_classes: int) -> None:
    """Raise ConfigError unless ``num_classes`` (2 outputs per keypoint) is even and >= 2."""
    check_num_classes(num_classes)
    if num_classes % 2:
        raise ConfigError(
            f"Expected an even num_classes (x and y per keypoint), received num_classes={num_classes}"
        )


class IntegralKeypointNet(Classifier):
    """Two stride-2 convs to 1/4 resolution, a 3x3 conv and dilated 3x3 convs, then one
    heatmap per keypoint (1x1 conv) and a soft-argmax.

    With the default dilations (2, 4, 8) each heatmap cell sees 127x127 pixels, more
    than a whole 96x96 face, at no loss of resolution. H and W must be multiples of 4.

    Args:
        in_channels: image channels.
        num_classes: outputs, two per keypoint (30: the 15 facial keypoints of seed 003);
            as in ``keypoints_net`` it counts outputs, not keypoints.
        widths: channels at 1/2 resolution, at 1/4, and of the dilated convs.
        dilations: dilation of each 3x3 conv that follows at 1/4 resolution.
    """

    head: nn.Sequential
    min_size = 4

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 30,
        widths: Sequence[int] = (16, 32, 64),
        dilations: Sequence[int] = (2, 4, 8),
    ) -> None:
        super().__init__()
        check_even(num_classes)
        if len(widths) != 3:
            raise ConfigError(f"Expected three widths, received widths={list(widths)}")
        self.in_channels, self.num_classes = in_channels, num_classes
        w_half, w_quarter, w_deep = widths
        dilated: list[nn.Module] = []
        channels = w_quarter
        for d in dilations:
            dilated += conv_bn_relu(channels, w_deep, dilation=d)
            channels = w_deep
        self.features = nn.Sequential(
            *conv_bn_relu(in_channels, w_half, stride=2),  # (B, w_half, H/2, W/2)
            *conv_bn_relu(w_half, w_quarter, stride=2),  # (B, w_quarter, H/4, W/4)
            *conv_bn_relu(w_quarter, w_quarter),
            *dilated,  # (B, channels, H/4, W/4)
        )
        self.num_features = channels
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                heatmaps=nn.Conv2d(self.num_features, num_classes // 2, 1),  # (B, P, H/4, W/4)
                soft_argmax=SoftArgmax2d(),  # (B, P, 2)
                flatten=nn.Flatten(),  # (B, 2P): x1, y1, x2, y2, ...
            )
        )

    def reset_classifier(self, num_classes: int) -> None:
        check_even(num_classes)
        super().reset_classifier(num_classes)

    def forward_heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> the unnormalised heatmaps (B, P, H/4, W/4) the head averages over."""
        return self.head[0](self.forward_features(x))

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        check_divisible(self, x, 4)


@register_model(
    "keypoints_heatmap",
    input_shape=(1, 96, 96),
    paper="Sun et al. 2018",
    year=2018,
    test_input_shape=(1, 32, 32),
    task="keypoints",
)
def keypoints_heatmap(**kwargs: Any) -> IntegralKeypointNet:
    return IntegralKeypointNet(**kwargs)
