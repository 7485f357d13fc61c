"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going deeper with convolutions"), laid
out as torchvision lays it out so that parameter names and counts match
``torchvision.models.googlenet``, with the two auxiliary classifiers of the paper."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model

# Weight of each auxiliary loss: 0.3 in the paper (section 5). The notes (seed 000) add
# the three softmax losses unweighted; we follow the paper.
AUX_WEIGHT = 0.3


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BN -> ReLU: torchvision's unit (the paper has no BN; the
    BN-Inception weights torchvision ships need it)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | pool->1x1.

    The third branch is the paper's "5x5" branch; torchvision (and so its weights and
    its parameter count) uses a 3x3 kernel there, and we follow it. cnnlab's
    :class:`~cnnlab.layers.InceptionModule` is the paper's version (5x5, biases, no BN).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, 1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)  # (B, out_channels, H, W)


class InceptionAux(nn.Module):
    """Side classifier: avg-pool to 4x4 -> 1x1 conv 128 -> fc 1024 -> dropout 0.7 -> fc.

    The paper pools 5x5 with stride 3, which gives 4x4 on the 14x14 maps of a 224x224
    input; the adaptive pool (torchvision's) gives 4x4 at any input size.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = BasicConv2d(in_channels, 128, 1)  # (B, 128, 4, 4)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.conv(self.pool(x)))  # (B, 2048)
        x = self.dropout(self.relu(self.fc1(x)))
        return self.fc2(x)  # (B, num_classes)


# name -> (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj); Szegedy et al. Table 1.
INCEPTION_CONFIG: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
# Stages whose outputs feed the side classifiers aux1 and aux2 (512 and 528 channels).
AUX_TAPS = ("inception4a", "inception4d")


def _body(in_channels: int) -> nn.Sequential:
    def pool(kernel_size: int) -> nn.MaxPool2d:
        return nn.MaxPool2d(kernel_size, stride=2, ceil_mode=True)

    layers: list[tuple[str, nn.Module]] = [
        ("conv1", BasicConv2d(in_channels, 64, 7, stride=2, padding=3)),  # (B, 64, H/2, W/2)
        ("maxpool1", pool(3)),  # (B, 64, H/4, W/4)
        ("conv2", BasicConv2d(64, 64, 1)),
        ("conv3", BasicConv2d(64, 192, 3, padding=1)),
        ("maxpool2", pool(3)),  # (B, 192, H/8, W/8)
    ]
    for name, config in INCEPTION_CONFIG.items():
        layers.append((name, Inception(*config)))
        if name == "inception3b":
            layers.append(("maxpool3", pool(3)))  # (B, 480, H/16, W/16)
        elif name == "inception4e":
            layers.append(("maxpool4", pool(2)))  # (B, 832, H/32, W/32)
    return nn.Sequential(OrderedDict(layers))  # (B, 1024, H/32, W/32)


class GoogLeNet(Classifier):
    """Stem -> nine Inception modules -> global average pool -> dropout 0.2 -> linear.

    In training mode (with ``aux_logits``) the two side classifiers run on the outputs
    of inception 4a and 4d and their logits are kept on ``self.aux_outputs``; ``forward``
    always returns the main logits alone. In eval mode the side classifiers are skipped.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        aux_logits: build the two auxiliary classifiers.
    """

    min_size = 15  # the last max-pools need maps of at least 3x3 and 2x2

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, aux_logits: bool = True):
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.features = _body(in_channels)
        self.num_features = 1024
        self.head = self._make_head(num_classes)
        self.aux_logits = aux_logits
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.aux_outputs: tuple[torch.Tensor, ...] = ()
        init_inception_weights(self)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(self.num_features, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        run_aux = self.training and self.aux1 is not None and self.aux2 is not None
        aux_heads = dict(zip(AUX_TAPS, (self.aux1, self.aux2), strict=True))
        aux: list[torch.Tensor] = []
        for name, layer in self.features.named_children():
            x = layer(x)
            head = aux_heads.get(name)
            if run_aux and head is not None:
                aux.append(head(x))  # (B, num_classes)
        self.aux_outputs = tuple(aux)
        return x

    def auxiliary_loss(self, criterion: nn.Module, target: torch.Tensor) -> torch.Tensor:
        """0.3 x the sum of the side classifiers' losses from the last training forward.

        Clears ``aux_outputs``; zero when there are none (eval mode or no aux heads).
        """
        outputs, self.aux_outputs = self.aux_outputs, ()
        return weighted_aux_loss(outputs, criterion, target, AUX_WEIGHT)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.aux_logits:
            self.aux1 = InceptionAux(512, num_classes)
            self.aux2 = InceptionAux(528, num_classes)


def weighted_aux_loss(
    outputs: tuple[torch.Tensor, ...], criterion: nn.Module, target: torch.Tensor, weight: float
) -> torch.Tensor:
    """``weight`` x the summed side-classifier losses; zero when there are none (eval mode)."""
    if not outputs:
        return torch.zeros((), device=target.device)
    return weight * torch.stack([criterion(out, target) for out in outputs]).sum()


def init_inception_weights(model: nn.Module, std: float = 0.01) -> None:
    """Truncated normal for convs and linears, BN to identity: torchvision's Inception init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2, b=2)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_model(
    "googlenet",
    input_shape=(3, 224, 224),
    paper="Szegedy et al. 2015",
    year=2015,
    test_input_shape=(3, 15, 15),
)
def googlenet(**kwargs: Any) -> GoogLeNet:
    return GoogLeNet(**kwargs)
