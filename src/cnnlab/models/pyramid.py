"""A zoo backbone as a feature pyramid: the last feature map at each stride of its body.

Dense-prediction heads (FCN, DeepLab, PSPNet) take any registered classifier whose
``features`` is an ``nn.Sequential`` (ResNet, ResNet-mini, VGG, ...). Where the body
shrinks the image is found once, at construction, by running a small probe image
through it, so no backbone needs to declare its stages.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.registry import create_model


@dataclass(frozen=True)
class Level:
    """One level of a pyramid: the body layer that ends it, its stride and channels."""

    index: int  # position in the body of the last layer at this stride
    stride: int  # input side / feature side
    channels: int


def find_levels(body: nn.Sequential, in_channels: int, probe_size: int = 64) -> list[Level]:
    """The levels of ``body``, finest first, found by running a zero image through it.

    A new level starts wherever the side of the maps shrinks; its stride is the
    previous stride times the (rounded) shrink factor. The probe runs in eval mode
    without autograd, on the device of the body's parameters (the meta device too).

    Raises:
        ConfigError: if the body does not shrink ``probe_size`` by exact factors (for
            example AlexNet's unpadded 11x11/4 conv): the heads need every level to be
            exactly H/stride so that their upsampling lands back on the input grid.
    """
    device = next(body.parameters()).device
    was_training = body.training
    body.eval()
    x = torch.zeros(1, in_channels, probe_size, probe_size, device=device)
    levels: list[Level] = []
    stride, side = 1, probe_size
    with torch.no_grad():
        for i, layer in enumerate(body):
            x = layer(x)
            new_side = x.shape[-1]
            if new_side < side:  # this layer starts a coarser level
                stride *= round(side / new_side)
                side = new_side
            if side * stride != probe_size:
                raise ConfigError(
                    f"Expected a body that shrinks {probe_size}x{probe_size} by exact factors, "
                    f"received one whose layer {i} ({type(layer).__name__}) gives "
                    f"{side}x{side} at stride {stride}"
                )
            if levels and levels[-1].stride == stride:
                levels.pop()  # a later layer at the same stride ends the level
            levels.append(Level(i, stride, x.shape[1]))
    body.train(was_training)
    return levels


class FeaturePyramid(nn.Module):
    """Runs a backbone body once and returns its last map at each stride, finest first.

    Layers after the deepest kept level are dropped, so no time is spent on them.

    Args:
        body: a backbone's ``features``; each layer maps (B, C, H, W) to (B, C', H', W').
        in_channels: image channels the body takes.
        num_levels: keep only the coarsest ``num_levels`` levels (None: all of them).
        probe_size: side of the probe image that finds the levels (a multiple of the
            body's total stride; 64 suits strides up to 64).
    """

    body: nn.Sequential

    def __init__(
        self,
        body: nn.Sequential,
        in_channels: int,
        num_levels: int | None = None,
        probe_size: int = 64,
    ) -> None:
        super().__init__()
        levels = find_levels(body, in_channels, probe_size)
        if num_levels is not None:
            if not 1 <= num_levels <= len(levels):
                raise ConfigError(
                    f"Expected num_levels in 1..{len(levels)} (strides "
                    f"{[lv.stride for lv in levels]}), received num_levels={num_levels}"
                )
            levels = levels[-num_levels:]
        kept = list(body.named_children())[: levels[-1].index + 1]
        self.body = nn.Sequential(OrderedDict(kept))  # the backbone's own layer names
        self.taps = [lv.index for lv in levels]
        self.strides = [lv.stride for lv in levels]
        self.channels = [lv.channels for lv in levels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.taps:
                maps.append(x)
        return maps


def feature_pyramid(
    backbone: str,
    in_channels: int,
    num_levels: int | None = None,
    backbone_args: dict[str, Any] | None = None,
) -> FeaturePyramid:
    """Build the registered model ``backbone`` and wrap its body (its head is discarded).

    Example: ``feature_pyramid("resnet18", 3, num_levels=3).strides == [8, 16, 32]``.

    Raises:
        ConfigError: if the model's ``features`` is not an ``nn.Sequential``.
    """
    model = create_model(backbone, in_channels=in_channels, **(backbone_args or {}))
    body = getattr(model, "features", None)
    if not isinstance(body, nn.Sequential):
        raise ConfigError(
            f"Expected a backbone whose features is an nn.Sequential, received "
            f"backbone={backbone!r} with features of type {type(body).__name__}"
        )
    return FeaturePyramid(body, in_channels, num_levels)
