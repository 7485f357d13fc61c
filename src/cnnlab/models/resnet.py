"""ResNet-18/34/50/101/152 for ImageNet (He, Zhang, Ren & Sun 2016, "Deep residual
learning for image recognition", Table 1), laid out as torchvision lays it out so
that parameter names and counts match ``torchvision.models.resnet*``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers.blocks import LayerFactory, conv1x1, conv3x3
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


def projection(
    in_channels: int, out_channels: int, stride: int, norm_layer: LayerFactory = nn.BatchNorm2d
) -> nn.Module | None:
    """Option B shortcut: a strided 1x1 conv + BN where the shape changes, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), norm_layer(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); the input is added back before the last ReLU."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = norm_layer(width)
        self.downsample = projection(in_channels, width, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), for ResNet-50/101/152.

    By default the stride sits on the 3x3 conv (torchvision's "ResNet v1.5");
    ``stride_in_1x1`` puts it on the first 1x1, as the paper and Keras's ResNet50 do.
    The parameter count is the same either way.

    Args:
        in_channels: input channels.
        width: channels of the 3x3 conv; the block outputs ``4 * width``.
        stride: stride of the block (1 or 2).
        norm_layer: norm module factory.
        stride_in_1x1: stride the first 1x1 conv instead of the 3x3 (ResNet v1).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(in_channels, out_channels, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]

# depth -> (block, blocks per stage); He et al. 2016, Table 1.
RESNET_CONFIGS: dict[int, tuple[Block, list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class ResNet(Classifier):
    """Stem (7x7/2 conv, 3x3/2 max-pool) -> four stages -> global average pool -> linear.

    The stages run at 1/4, 1/8, 1/16 and 1/32 of the input side (56, 28, 14, 7 at
    224x224). Any input of at least 32x32 works: the last maps are then 1x1.

    The defaults are torchvision's; ``stride_in_1x1=True, bn_eps=1.001e-5,
    bn_momentum=0.01`` is Keras's ResNet50 (``cnnlab.transfer.layout_keras``).

    Args:
        block: BasicBlock or Bottleneck.
        layers: blocks per stage.
        in_channels: image channels.
        num_classes: outputs of the last layer.
        stride_in_1x1: Bottleneck only: stride the first 1x1 conv, not the 3x3 (v1).
        bn_eps: every BatchNorm's epsilon.
        bn_momentum: every BatchNorm's momentum (PyTorch's: 1 - Keras's).
    """

    min_size = 32

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        in_channels: int = 3,
        num_classes: int = 1000,
        stride_in_1x1: bool = False,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        norm_layer = partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)
        options = _block_options(block, stride_in_1x1, bn_eps, bn_momentum)
        stem: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)),
            ("bn1", norm_layer(64)),
            ("relu", nn.ReLU(inplace=True)),
            ("maxpool", nn.MaxPool2d(3, stride=2, padding=1)),  # (B, 64, H/4, W/4)
        ]
        channels, stages = 64, list[tuple[str, nn.Module]]()
        for i, (width, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for j in range(count):
                blocks.append(block(channels, width, 2 if i > 0 and j == 0 else 1, **options))
                channels = width * block.expansion
            stages.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        self.features = nn.Sequential(OrderedDict(stem + stages))  # (B, C, H/32, W/32)
        self.num_features = channels
        self.head = self._make_head(num_classes)
        init_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.num_features, num_classes)
        )


def _block_options(
    block: Block, stride_in_1x1: bool, bn_eps: float, bn_momentum: float
) -> dict[str, Any]:
    """Keyword arguments for ``block``: only the non-default ones, so that subclasses with
    the plain ``(in_channels, width, stride)`` signature (SEBottleneck) keep working."""
    options: dict[str, Any] = {}
    if stride_in_1x1:
        if not issubclass(block, Bottleneck):
            raise ConfigError(
                f"Expected a Bottleneck block with stride_in_1x1=True, received {block.__name__}"
            )
        options["stride_in_1x1"] = True
    if (bn_eps, bn_momentum) != (1e-5, 0.1):
        options["norm_layer"] = partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)
    return options


def init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convs, BN to identity: what torchvision and the paper use."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _resnet(depth: int, **kwargs: Any) -> ResNet:
    block, layers = RESNET_CONFIGS[depth]
    return ResNet(block, layers, **kwargs)


def _register(name: str) -> Any:
    return register_model(
        name,
        input_shape=(3, 224, 224),
        paper="He et al. 2016",
        year=2016,
        test_input_shape=(3, 64, 64),  # 2x2 last maps: BatchNorm sees more than one value
    )


@_register("resnet18")
def resnet18(**kwargs: Any) -> ResNet:
    return _resnet(18, **kwargs)


@_register("resnet34")
def resnet34(**kwargs: Any) -> ResNet:
    return _resnet(34, **kwargs)


@_register("resnet50")
def resnet50(**kwargs: Any) -> ResNet:
    return _resnet(50, **kwargs)


@_register("resnet101")
def resnet101(**kwargs: Any) -> ResNet:
    return _resnet(101, **kwargs)


@_register("resnet152")
def resnet152(**kwargs: Any) -> ResNet:
    return _resnet(152, **kwargs)
