"""A small residual network for 28x28 images, after He et al. 2016 ("Deep residual
learning for image recognition"): a conv stem, three stages of basic blocks with
identity or 1x1-projection shortcuts, global average pooling and a linear head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers.dropout import Dropout
from cnnlab.layers.pool import GlobalPool2d
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the BatchNorm that follows has its own shift.
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the input is added back (through a 1x1 conv when shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetMini(Classifier):
    """Stem -> [stage of basic blocks] x len(widths) -> global average pool -> linear.

    With the defaults the stem halves 28x28 to 14x14 with a max-pool, so the
    stages run at 14, 7 and 4 pixels: a few MMACs per image, which is what makes
    it train in minutes on two CPU cores.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        widths: channels of each stage; every stage after the first halves H and W.
        blocks: basic blocks per stage.
        stem_pool: max-pool 2x2 after the stem conv.
        dropout: dropout before the linear head.
        global_pool: 'avg' (the paper's), 'max', 'avgmax' or 'catavgmax'; max pooling
            helps multi-label scenes, where each item covers a small part of the image.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
        stem_pool: bool = True,
        dropout: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        GlobalPool2d(global_pool)  # checks the mode before anything is built
        self.global_pool = global_pool
        if len(widths) != len(blocks) or not widths:
            raise ConfigError(
                f"Expected one block count per stage, received widths={list(widths)} "
                f"and blocks={list(blocks)}"
            )
        self.in_channels, self.num_classes = in_channels, num_classes
        # Pooling before BatchNorm and ReLU (as airbench does) runs them on 4x fewer
        # values; with a positive BN scale the order does not change what max-pool picks.
        pool: list[nn.Module] = [nn.MaxPool2d(2)] if stem_pool else []
        stem = [
            conv3x3(in_channels, widths[0]),
            *pool,
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        stages: list[nn.Module] = []
        channels = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(BasicBlock(channels, width, stride))
                channels = width
        self.features = nn.Sequential(*stem, *stages)
        self.num_features, self.dropout = channels, dropout
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        pool = GlobalPool2d(self.global_pool)
        return nn.Sequential(
            # 'avg' keeps the module that saved models have always had.
            nn.AdaptiveAvgPool2d(1) if pool.mode == "avg" else pool,
            nn.Flatten(),
            Dropout(self.dropout),
            nn.Linear(self.num_features * pool.multiplier, num_classes),
        )


@register_model("resnet_mini", input_shape=(1, 28, 28), paper="He et al. 2016", year=2016)
def resnet_mini(**kwargs: Any) -> ResNetMini:
    return ResNetMini(**kwargs)
