"""MobileNet v1 (Howard et al. 2017, "MobileNets: efficient convolutional neural networks
for mobile vision applications") and MobileNet v2 (Sandler et al. 2018, "MobileNetV2:
inverted residuals and linear bottlenecks"), width multiplier 1.0."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.core.errors import ConfigError
from cnnlab.layers.blocks import InvertedResidual, LayerFactory, conv1x1
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model

# Both nets halve the side five times: 32x32 is the smallest input that keeps 1x1 maps.
MIN_SIZE = 32


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    stride: int,
    act_layer: type[nn.Module],
    norm_layer: LayerFactory = nn.BatchNorm2d,
) -> nn.Sequential:
    """3x3 conv (padding 1, no bias) + BN + activation: the stem of both nets."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        norm_layer(out_channels),
        act_layer(inplace=True),
    )


class SamePadConv2d(nn.Conv2d):
    """Conv2d padded as TensorFlow's "same": when the padding is odd, the extra pixel goes after.

    Keras's MobileNetV2 pads its stride-2 3x3 convs so: 0 before and 1 after on an even
    side, 1 and 1 on an odd one. ``padding=1`` pads 1 and 1 always, which on an even
    input samples every stride-2 output one pixel up and left of Keras's. Build it with
    ``padding=0``: the padding is worked out from each input's size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        # F.pad lists the last dim first: (left, right, top, bottom).
        for size, k, s, d in reversed(
            list(zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True))
        ):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def use_same_padding(model: nn.Module) -> None:
    """Swap each strided ``nn.Conv2d`` under ``model`` for a SamePadConv2d of the same shape.

    The swap keeps each module's name, so parameter names and counts do not change.
    """
    for parent in list(model.modules()):
        for name, conv in list(parent.named_children()):
            if type(conv) is not nn.Conv2d or conv.stride == (1, 1):
                continue
            (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
            twin = SamePadConv2d(
                conv.in_channels,
                conv.out_channels,
                (kh, kw),
                stride=(sh, sw),
                dilation=(dh, dw),
                groups=conv.groups,
                bias=conv.bias is not None,
            )
            setattr(parent, name, twin)


def depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """MobileNet v1's unit (paper, Fig. 3): 3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False
        ),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        conv1x1(in_channels, out_channels),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


# (out_channels, stride) of the 13 depthwise-separable units; Howard et al. 2017, Table 1.
MOBILENET_V1_UNITS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
MOBILENET_V1_UNITS += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

# (expand_ratio t, out_channels c, repeats n, first stride s); Sandler et al. 2018, Table 2.
MOBILENET_V2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV1(Classifier):
    """3x3/2 conv stem, 13 depthwise-separable units, global average pool, linear.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
    """

    min_size = MIN_SIZE

    def __init__(self, in_channels: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        layers: list[nn.Module] = [conv_bn_act(in_channels, 32, 2, nn.ReLU)]  # (B, 32, H/2, W/2)
        channels = 32
        for out_channels, stride in MOBILENET_V1_UNITS:
            layers.append(depthwise_separable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)  # (B, 1024, H/32, W/32)
        self.num_features = channels
        self.head = self._make_head(num_classes)
        init_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.num_features, num_classes)
        )


class MobileNetV2(Classifier):
    """3x3/2 conv stem, 17 inverted residuals, 1x1 conv to 1280, pool, dropout, linear.

    Laid out as torchvision lays it out (ReLU6, dropout 0.2 before the classifier).
    ``padding="same", bn_eps=1e-3, bn_momentum=0.001, dropout=0.0`` is Keras's
    MobileNetV2 (``cnnlab.transfer.layout_keras``).

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        dropout: drop probability before the classifier.
        padding: of the stride-2 convs: "symmetric" (1 on each side, torchvision) or
            "same" (TensorFlow's, see SamePadConv2d).
        bn_eps: every BatchNorm's epsilon.
        bn_momentum: every BatchNorm's momentum (PyTorch's: 1 - Keras's).
    """

    min_size = MIN_SIZE

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        dropout: float = 0.2,
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if padding not in ("symmetric", "same"):
            raise ConfigError(
                f"Expected padding in ('symmetric', 'same'), received padding={padding!r}"
            )
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        norm = partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)
        layers: list[nn.Module] = [conv_bn_act(in_channels, 32, 2, nn.ReLU6, norm)]
        channels = 32
        for t, c, n, s in MOBILENET_V2_STAGES:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t, norm))
                channels = c
        self.num_features = 1280
        layers += [conv1x1(channels, 1280), norm(1280), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)  # (B, 1280, H/32, W/32)
        if padding == "same":
            use_same_padding(self.features)
        self.head = self._make_head(num_classes)
        init_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(self.dropout),
            nn.Linear(self.num_features, num_classes),
        )


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet init: He (fan-out) convs, BN to identity, small linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register_model(
    "mobilenet_v1",
    input_shape=(3, 224, 224),
    paper="Howard et al. 2017",
    year=2017,
    test_input_shape=(3, MIN_SIZE, MIN_SIZE),
)
def mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    return MobileNetV1(**kwargs)


@register_model(
    "mobilenet_v2",
    input_shape=(3, 224, 224),
    paper="Sandler et al. 2018",
    year=2018,
    test_input_shape=(3, MIN_SIZE, MIN_SIZE),
)
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(**kwargs)
