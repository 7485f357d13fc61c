"""The two small networks the lecture seeds build by hand: seed 003's facial-keypoint
regressor (Daniel Nouri's Lasagne net) and seed 004's two-layer MNIST convnet."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


def _size_pair(size: tuple[int, int] | int) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


def check_fixed_size(model: Classifier, x: torch.Tensor, input_size: tuple[int, int]) -> None:
    """Raise ShapeMismatchError naming both shapes unless ``x`` is exactly ``input_size``.

    Both nets flatten into a dense layer, so they are built for one image size.
    """
    if tuple(x.shape[2:]) != input_size:
        raise ShapeMismatchError(
            f"{type(model).__name__} built for input (B, {model.in_channels}, "
            f"{input_size[0]}, {input_size[1]}), received {tuple(x.shape)}"
        )


class KeypointsNet(Classifier):
    """Seed 003: three 'valid' conv + 2x2 max-pool stages, two 1000-unit dense layers.

    At 96x96 the stages give 32x47x47, 64x23x23 and 128x11x11 (the "128x11x11
    volume" of the seed). The output is linear: 30 numbers, the x and y of 15
    facial keypoints (a regression, so ``num_classes`` counts outputs). Lasagne's
    default nonlinearity, the rectifier, follows every other layer.

    Args:
        in_channels: image channels (1: grayscale faces).
        num_classes: outputs of the last layer.
        input_size: (H, W) of the images the model is built for.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 30, input_size: tuple[int, int] | int = 96
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.input_size = _size_pair(input_size)
        stages = [(in_channels, 32, 3), (32, 64, 2), (64, 128, 2)]  # (in, out, kernel)
        layers: list[nn.Module] = []
        h, w = self.input_size
        for c_in, c_out, k in stages:
            layers += [nn.Conv2d(c_in, c_out, k), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            h, w = (h - k + 1) // 2, (w - k + 1) // 2  # valid conv, then pool
            if h < 1 or w < 1:
                raise ShapeMismatchError(
                    f"KeypointsNet needs input of at least 16x16, received input_size={input_size}"
                )
        self.features = nn.Sequential(*layers)  # (B, 128, 11, 11) at 96x96
        self.flat_features = 128 * h * w
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, 1000),
            nn.ReLU(inplace=True),
            nn.Linear(1000, 1000),
            nn.ReLU(inplace=True),
            nn.Linear(1000, num_classes),
        )

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        check_fixed_size(self, x, self.input_size)


class MnistNet(Classifier):
    """Seed 004: 5x5 'same' conv to 9 maps, pool, 5x5 'same' conv to 16 maps, pool, dense.

    On 28x28 the signals are 28x28x9 and 14x14x16 (the seed's sizes) and the dense
    layer sees 7x7x16.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        input_size: (H, W) of the images the model is built for.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] | int = 28
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.input_size = _size_pair(input_size)
        h, w = self.input_size[0] // 4, self.input_size[1] // 4  # two 2x2 pools
        if h < 1 or w < 1:
            raise ShapeMismatchError(
                f"MnistNet needs input of at least 4x4, received input_size={input_size}"
            )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 9, 5, padding=2),  # (B, 9, H, W)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 9, H/2, W/2)
            nn.Conv2d(9, 16, 5, padding=2),  # (B, 16, H/2, W/2)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 16, H/4, W/4)
        )
        self.flat_features = 16 * h * w
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(self.flat_features, num_classes))

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        check_fixed_size(self, x, self.input_size)


@register_model(
    "keypoints_net",
    input_shape=(1, 96, 96),
    paper="Nouri 2014, via seed 003",
    year=2014,
    fixed_input=True,
    task="keypoints",
)
def keypoints_net(**kwargs: Any) -> KeypointsNet:
    return KeypointsNet(**kwargs)


@register_model(
    "mnist_net",
    input_shape=(1, 28, 28),
    paper="Winther 2018 (seed 004, DTU lecture)",
    year=2018,
    fixed_input=True,
)
def mnist_net(**kwargs: Any) -> MnistNet:
    return MnistNet(**kwargs)
