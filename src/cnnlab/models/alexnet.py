"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep
convolutional neural networks"): seed 001's Table 14-2 version, and torchvision's
single-tower version (Krizhevsky 2014, "One weird trick...")."""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


def fc_head(in_features: int, num_classes: int, dropout: float) -> list[nn.Module]:
    """F8 4096 -> F9 4096 -> out, with dropout before F8 and F9 as in the paper."""
    return [
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(in_features, 4096),  # F8
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),  # F9
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),  # out
    ]


class AlexNetSeed(Classifier):
    """Seed 001, Table 14-2: C1 -> S2 -> C3 -> S4 -> C5 -> C6 -> C7 -> F8 -> F9 -> out.

    Two things the table leaves out, taken from the paper: local response
    normalisation after the ReLUs of C1 and C3 (the seed's text mentions it), and
    the 3x3/2 max-pool after C7 (13x13 -> 6x6). Without that pool F8 alone would
    hold 256*13*13*4096 = 177M weights, three times the paper's 60M total. The pool
    starts the head, so ``features`` ends at C7 as in the table. An adaptive 6x6
    average pool (identity at 227x227) lets any input of at least 67x67 through.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        dropout: dropout before F8 and F9 (paper: 0.5).
    """

    min_size = 67  # the smallest side that leaves 3x3 for the pool after C7

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 11, stride=4),  # C1: 96@55x55 (VALID)
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, stride=2),  # S2: 96@27x27
            nn.Conv2d(96, 256, 5, padding=2),  # C3: 256@27x27 (SAME)
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, stride=2),  # S4: 256@13x13
            nn.Conv2d(256, 384, 3, padding=1),  # C5: 384@13x13
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1),  # C6: 384@13x13
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),  # C7: 256@13x13
            nn.ReLU(inplace=True),
        )
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.MaxPool2d(3, stride=2),  # 256@6x6
            nn.AdaptiveAvgPool2d((6, 6)),
            *fc_head(256 * 6 * 6, num_classes, self.dropout),
        )


class AlexNet(Classifier):
    """torchvision's AlexNet: one tower, 64/192/384/256/256 maps, no LRN.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        dropout: dropout before F8 and F9.
    """

    min_size = 63  # torchvision's documented min_size for alexnet

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=2),  # 64@55x55 at 224
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # 64@27x27
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # 192@13x13
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),  # 256@13x13
            nn.ReLU(inplace=True),
        )
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.MaxPool2d(3, stride=2),  # 256@6x6
            nn.AdaptiveAvgPool2d((6, 6)),
            *fc_head(256 * 6 * 6, num_classes, self.dropout),
        )


@register_model(
    "alexnet_seed",
    input_shape=(3, 227, 227),
    paper="Krizhevsky et al. 2012",
    year=2012,
    test_input_shape=(3, 67, 67),
)
def alexnet_seed(**kwargs: Any) -> AlexNetSeed:
    return AlexNetSeed(**kwargs)


@register_model(
    "alexnet",
    input_shape=(3, 224, 224),
    paper="Krizhevsky 2014",
    year=2014,
    test_input_shape=(3, 63, 63),
)
def alexnet(**kwargs: Any) -> AlexNet:
    return AlexNet(**kwargs)
