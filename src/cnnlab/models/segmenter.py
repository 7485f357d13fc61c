"""The contract every segmentation model follows: an image -> feature pyramid body and a
head that turns the pyramid into per-pixel class logits at the input resolution."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.models.base import check_channels, check_num_classes


class Segmenter(nn.Module):
    """A body (``features``: image -> feature pyramid) followed by a head.

    The split mirrors :class:`~cnnlab.models.base.Classifier`, with two differences a
    dense prediction needs: the body returns every level of its pyramid (the head of
    U-Net or FCN-8s fuses several), and the head is told the output size.

    Subclasses build ``self.features`` and ``self.head`` (the layers that depend on
    ``num_classes``, rebuilt by :meth:`reset_classifier` via :meth:`_make_head`),
    and implement :meth:`forward_head` (and :meth:`forward_features` when ``features``
    does not itself return the pyramid).
    """

    in_channels: int
    num_classes: int
    stride: int  # H and W must be multiples of it: the coarsest level's stride, or more
    features: nn.Module
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image batch (B, C, H, W) -> feature maps, finest first (``features`` returns the
        pyramid; U-Net and SegNet walk their own levels)."""
        self.check_input(x)
        features: list[torch.Tensor] = self.features(x)
        return features

    def forward_head(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Feature pyramid -> logits (B, num_classes, *size)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        return self.forward_head(features, (x.shape[-2], x.shape[-1]))

    def _make_head(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the class-dependent layers with fresh ones for ``num_classes`` classes."""
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ShapeMismatchError naming the shape unless ``x`` fits the network."""
        check_channels(self, x, self.in_channels)
        check_divisible(self, x, self.stride)


def check_divisible(model: nn.Module, x: torch.Tensor, multiple: int) -> None:
    """Raise ShapeMismatchError unless H and W of ``x`` are positive multiples of ``multiple``.

    Every level of an encoder is then exactly H/s x W/s, so the decoder's upsampling
    lands back on the input grid with no cropping or padding.
    """
    h, w = x.shape[-2:]
    if h < multiple or w < multiple or h % multiple or w % multiple:
        raise ShapeMismatchError(
            f"{type(model).__name__} needs H and W that are multiples of {multiple} "
            f"(its total stride), received {tuple(x.shape)}"
        )
