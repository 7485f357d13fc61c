"""DenseNet-121/169/201 for ImageNet and DenseNet-BC (L=100, k=12) for CIFAR (Huang, Liu,
van der Maaten & Weinberger 2017, "Densely connected convolutional networks", Table 1 and
section 4); the ImageNet variants match ``torchvision.models.densenet*`` in counts."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers.dense import DenseBlock, Transition
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model

# depth -> dense layers per block, growth rate k 32; Huang et al. Table 1.
IMAGENET_CONFIGS: dict[int, tuple[int, ...]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
}


def _imagenet_stem(in_channels: int, out_channels: int) -> list[tuple[str, nn.Module]]:
    """7x7/2 conv -> BN -> ReLU -> 3x3/2 max-pool: (B, C, H, W) -> (B, 2k, H/4, W/4)."""
    return [
        ("conv0", nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False)),
        ("norm0", nn.BatchNorm2d(out_channels)),
        ("relu0", nn.ReLU(inplace=True)),
        ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
    ]


def _cifar_stem(in_channels: int, out_channels: int) -> list[tuple[str, nn.Module]]:
    """One 3x3 conv with 2k maps (section 3, DenseNet-BC): (B, C, H, W) -> (B, 2k, H, W)."""
    return [("conv0", nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False))]


class DenseNet(Classifier):
    """Stem -> dense blocks joined by transitions -> BN-ReLU -> global average pool -> linear.

    Each transition halves H and W and, with ``compression`` 0.5 (the "C" of DenseNet-BC),
    halves the channels; each dense layer is BN-ReLU-1x1(4k)-BN-ReLU-3x3(k), the "B".

    Args:
        block_config: dense layers per block.
        growth_rate: k, channels each dense layer adds.
        imagenet_stem: 7x7/2 conv + max-pool stem (ImageNet) rather than one 3x3 conv.
        compression: theta, the fraction of channels a transition keeps.
        in_channels: image channels.
        num_classes: outputs of the last layer.
    """

    def __init__(
        self,
        block_config: Sequence[int],
        growth_rate: int = 32,
        imagenet_stem: bool = True,
        compression: float = 0.5,
        in_channels: int = 3,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if not 0 < compression <= 1:
            raise ConfigError(f"Expected 0 < compression <= 1, received compression={compression}")
        self.in_channels, self.num_classes = in_channels, num_classes
        channels = 2 * growth_rate
        stem = _imagenet_stem if imagenet_stem else _cifar_stem
        layers = stem(in_channels, channels)
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate)
            layers.append((f"denseblock{i + 1}", block))
            channels = block.out_channels
            if i < len(block_config) - 1:
                reduced = int(channels * compression)
                layers.append((f"transition{i + 1}", Transition(channels, reduced)))
                channels = reduced  # H and W halve too
        layers += [("norm5", nn.BatchNorm2d(channels)), ("relu5", nn.ReLU(inplace=True))]
        self.features = nn.Sequential(OrderedDict(layers))  # (B, channels, H/s, W/s)
        self.num_features = channels
        # Smallest side whose last maps are still 1x1: each transition halves (floor), so
        # the last block needs 2^(n-1) before them; the padded stem gives m from 4m - 3.
        last = 2 ** (len(block_config) - 1)
        self.min_size = 4 * last - 3 if imagenet_stem else last
        self.head = self._make_head(num_classes)
        _init_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.num_features, num_classes)
        )


def _init_weights(model: nn.Module) -> None:
    """He init for convs, BN to identity, zero linear bias: torchvision's DenseNet init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def _register(name: str, **kwargs: Any) -> Any:
    return register_model(name, paper="Huang et al. 2017", year=2017, **kwargs)


def _imagenet(name: str) -> Any:
    # 29x29: the smallest input whose last maps are 1x1 (BatchNorm sees batch-many values).
    return _register(name, input_shape=(3, 224, 224), test_input_shape=(3, 29, 29))


@_imagenet("densenet121")
def densenet121(**kwargs: Any) -> DenseNet:
    return DenseNet(IMAGENET_CONFIGS[121], **kwargs)


@_imagenet("densenet169")
def densenet169(**kwargs: Any) -> DenseNet:
    return DenseNet(IMAGENET_CONFIGS[169], **kwargs)


@_imagenet("densenet201")
def densenet201(**kwargs: Any) -> DenseNet:
    return DenseNet(IMAGENET_CONFIGS[201], **kwargs)


# L=100: 3 blocks x 16 bottleneck layers x 2 convs + stem conv + 2 transitions + linear.
@_register("densenet_bc_100_12", input_shape=(3, 32, 32), test_input_shape=(3, 4, 4))
def densenet_bc_100_12(**kwargs: Any) -> DenseNet:
    kwargs.setdefault("num_classes", 10)
    return DenseNet((16, 16, 16), growth_rate=12, imagenet_stem=False, **kwargs)
