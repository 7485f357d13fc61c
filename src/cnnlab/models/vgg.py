"""VGG-11/13/16/19 with and without batch norm (Simonyan & Zisserman 2015, "Very deep
convolutional networks for large-scale image recognition", Table 1 configs A, B, D, E),
laid out as torchvision lays it out so the parameter counts match."""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model

# Channels of each 3x3 conv; "M" is a 2x2 max-pool. Simonyan & Zisserman, Table 1.
_FOUR_512: list[int | str] = [512, 512, 512, 512, "M"]  # config E's last two stages
VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", *_FOUR_512, *_FOUR_512],
}


def make_layers(config: list[int | str], in_channels: int, batch_norm: bool) -> nn.Sequential:
    """Conv(-BN)-ReLU for each width in ``config``, a 2x2 max-pool for each "M"."""
    layers: list[nn.Module] = []
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(in_channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(Classifier):
    """Conv stacks -> max-pool -> adaptive average pool to 7x7 -> FC 4096 -> FC 4096 -> out.

    ``features`` stops before the last max-pool so that Grad-CAM sees the last conv
    maps; the head starts with that pool. The 7x7 adaptive pool (as in torchvision)
    keeps the paper's 512*7*7 classifier input, and so its parameter count, while
    accepting any input of at least 32x32.

    Args:
        config: layer table, e.g. ``VGG_CONFIGS["D"]``.
        batch_norm: BatchNorm after every conv (the ``_bn`` variants).
        in_channels: image channels.
        num_classes: outputs of the last layer.
        dropout: dropout after each hidden FC layer (paper: 0.5).
    """

    min_size = 32  # five 2x2 max-pools

    def __init__(
        self,
        config: list[int | str],
        batch_norm: bool = False,
        in_channels: int = 3,
        num_classes: int = 1000,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        body = config[:-1] if config[-1] == "M" else config
        self.features = make_layers(body, in_channels, batch_norm)  # (B, 512, H/16, W/16)
        self.head = self._make_head(num_classes)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _make_head(self, num_classes: int) -> nn.Module:
        head = nn.Sequential(
            nn.MaxPool2d(2),  # (B, 512, H/32, W/32)
            nn.AdaptiveAvgPool2d((7, 7)),  # (B, 512, 7, 7)
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(self.dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(self.dropout),
            nn.Linear(4096, num_classes),
        )
        for m in head.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)  # the paper's N(0, 10^-2)
                nn.init.zeros_(m.bias)
        return head


def _register(name: str) -> Any:
    return register_model(
        name,
        input_shape=(3, 224, 224),
        paper="Simonyan & Zisserman 2015",
        year=2015,
        test_input_shape=(3, 32, 32),
    )


@_register("vgg11")
def vgg11(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["A"], batch_norm=False, **kwargs)


@_register("vgg11_bn")
def vgg11_bn(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["A"], batch_norm=True, **kwargs)


@_register("vgg13")
def vgg13(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["B"], batch_norm=False, **kwargs)


@_register("vgg13_bn")
def vgg13_bn(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["B"], batch_norm=True, **kwargs)


@_register("vgg16")
def vgg16(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["D"], batch_norm=False, **kwargs)


@_register("vgg16_bn")
def vgg16_bn(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["D"], batch_norm=True, **kwargs)


@_register("vgg19")
def vgg19(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["E"], batch_norm=False, **kwargs)


@_register("vgg19_bn")
def vgg19_bn(**kwargs: Any) -> VGG:
    return VGG(VGG_CONFIGS["E"], batch_norm=True, **kwargs)
