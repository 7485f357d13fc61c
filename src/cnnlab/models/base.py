"""The classifier contract every zoo model follows (timm-style)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError


class Classifier(nn.Module):
    """A body (``features``) followed by a head (``head``).

    Subclasses build ``self.features`` (image -> feature maps) and
    ``self.head`` via :meth:`_make_head`. Grad-CAM, feature maps and transfer
    learning rely on the split, so every zoo model keeps it.
    """

    in_channels: int
    num_classes: int
    features: nn.Module
    head: nn.Module
    min_size: int = 1  # smallest H and W the network can take; subclasses set their own

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch (B, C, H, W) -> last feature maps, before any pooling/flatten."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps -> logits (B, num_classes)."""
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _make_head(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` outputs."""
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ShapeMismatchError naming both shapes when ``x`` cannot fit."""
        check_channels(self, x, self.in_channels)
        check_min_size(self, x, self.min_size)


def traced() -> bool:
    """True while torch.export or torch.compile traces the model: checks that read the
    data (an id's range) are skipped then, as the traced graph cannot branch on values."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting())


def check_num_classes(num_classes: int) -> None:
    """Raise ConfigError unless ``num_classes`` is a positive int."""
    if num_classes < 1:
        raise ConfigError(f"Expected num_classes >= 1, received num_classes={num_classes}")


def check_channels(model: nn.Module, x: torch.Tensor, in_channels: int) -> None:
    """Raise ShapeMismatchError unless ``x`` is an image batch (B, in_channels, H, W)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ShapeMismatchError(
            f"{type(model).__name__} expects input (B, {in_channels}, H, W), "
            f"received {tuple(x.shape)}"
        )


def check_min_size(model: nn.Module, x: torch.Tensor, min_size: int) -> None:
    """Raise ShapeMismatchError when H or W of ``x`` is below ``min_size``."""
    if min(x.shape[-2:]) < min_size:
        raise ShapeMismatchError(
            f"{type(model).__name__} needs input at least {min_size}x{min_size}, "
            f"received {tuple(x.shape)}"
        )
