"""The Keras CIFAR-10 example network from seed 000 ("Implementing a CNN in keras"):
Conv32-Conv32-Pool-Drop-Conv64-Conv64-Pool-Drop-Dense512-Drop-Dense."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.layers.dropout import Dropout
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


def _conv_pair(in_channels: int, out_channels: int) -> list[nn.Module]:
    # Keras: Conv2D(n, 3, padding='same') then Conv2D(n, 3) -- the second is 'valid'.
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        Dropout(0.25),
    ]


class KerasCifarNet(Classifier):
    """Two conv-conv-pool stages and a 512-unit dense layer, as in the seed.

    The dense layer's input size depends on the image size (Flatten), so the
    model is built for one ``input_size``; at 32x32x3 it has 1,250,858
    parameters, the count Keras prints for the same example.

    Args:
        in_channels: image channels (3 for CIFAR-10, 1 for Fashion-MNIST).
        num_classes: outputs of the last layer.
        input_size: (H, W) of the images the model is built for.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: tuple[int, int] | int = (32, 32),
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        self.in_channels, self.num_classes, self.input_size = in_channels, num_classes, (h, w)
        self.features = nn.Sequential(*_conv_pair(in_channels, 32), *_conv_pair(32, 64))
        # Each stage: same conv (size kept), valid conv (-2), pool (//2).
        for _ in range(2):
            h, w = (h - 2) // 2, (w - 2) // 2
        if h < 1 or w < 1:
            raise ShapeMismatchError(
                f"KerasCifarNet needs input of at least 10x10, received input_size={input_size}"
            )
        self.flat_features = 64 * h * w
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, 512),
            nn.ReLU(inplace=True),
            Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if tuple(x.shape[2:]) != self.input_size:
            raise ShapeMismatchError(
                f"KerasCifarNet built for input (B, {self.in_channels}, "
                f"{self.input_size[0]}, {self.input_size[1]}), received {tuple(x.shape)}"
            )


@register_model(
    "keras_cifar",
    input_shape=(3, 32, 32),
    paper="Keras examples (seed 000)",
    year=2015,
    fixed_input=True,
)
def keras_cifar(**kwargs: Any) -> KerasCifarNet:
    return KerasCifarNet(**kwargs)
