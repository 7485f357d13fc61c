"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, 1998, "Gradient-based learning applied
to document recognition"), as in seed 001's Table 14-1, plus a modern variant."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


class LeNet5(Classifier):
    """C1 conv5x5 -> S2 pool -> C3 conv5x5 -> S4 pool -> C5 conv5x5 -> F6 84 -> out.

    Two departures from the paper, as every modern reimplementation makes them:
    C3 connects to all six S2 maps (the paper's partial table kept the count
    down on 1998 hardware) and the RBF output layer is a linear layer trained
    with cross-entropy. The paper's input is 32x32; a 28x28 input (MNIST as
    stored) is zero-padded by 2 in C1 so every later size matches Table 14-1.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        input_size: side of the square input, 28 or 32.
        modern: ReLU and max-pooling instead of tanh and average pooling.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 32,
        modern: bool = False,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if input_size not in (28, 32):
            raise ConfigError(f"Expected input_size 28 or 32, received input_size={input_size}")
        self.in_channels, self.num_classes, self.input_size = in_channels, num_classes, input_size
        act: type[nn.Module] = nn.ReLU if modern else nn.Tanh
        pool: type[nn.Module] = nn.MaxPool2d if modern else nn.AvgPool2d
        self.act_layer = act
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=(32 - input_size) // 2),  # C1: 6@28x28
            act(),
            pool(2),  # S2: 6@14x14
            nn.Conv2d(6, 16, 5),  # C3: 16@10x10
            act(),
            pool(2),  # S4: 16@5x5
            nn.Conv2d(16, 120, 5),  # C5: 120@1x1
            act(),
        )
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(), nn.Linear(120, 84), self.act_layer(), nn.Linear(84, num_classes)
        )

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ShapeMismatchError(
                f"LeNet5 built for {self.input_size}x{self.input_size} input, received "
                f"{tuple(x.shape)}; build it with input_size={x.shape[-1]} (28 or 32)"
            )


@register_model(
    "lenet5", input_shape=(1, 32, 32), paper="LeCun et al. 1998", year=1998, fixed_input=True
)
def lenet5(**kwargs: Any) -> LeNet5:
    return LeNet5(**kwargs)


@register_model(
    "lenet5_modern", input_shape=(1, 32, 32), paper="LeCun et al. 1998", year=1998, fixed_input=True
)
def lenet5_modern(**kwargs: Any) -> LeNet5:
    return LeNet5(modern=True, **kwargs)
