"""Inception v3 (Szegedy, Vanhoucke, Ioffe, Shlens & Wojna 2016, "Rethinking the Inception
architecture for computer vision", Table 1 and Figures 5-7), laid out as torchvision lays it
out so that parameter names and counts match ``torchvision.models.inception_v3``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.googlenet import BasicConv2d, init_inception_weights, weighted_aux_loss
from cnnlab.models.registry import register_model

# Weight of the auxiliary loss. The paper gives none; 0.4 is TF-slim's and torchvision's
# reference recipe.
AUX_WEIGHT = 0.4


def _cat(*branches: torch.Tensor) -> torch.Tensor:
    return torch.cat(branches, dim=1)


class InceptionA(nn.Module):
    """35x35 module (Figure 5): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avg-pool->1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5 = nn.Sequential(
            BasicConv2d(in_channels, 48, 1), BasicConv2d(48, 64, 5, padding=2)
        )
        self.branch3x3dbl = nn.Sequential(
            BasicConv2d(in_channels, 64, 1),
            BasicConv2d(64, 96, 3, padding=1),
            BasicConv2d(96, 96, 3, padding=1),
        )
        self.branch_pool = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1), BasicConv2d(in_channels, pool_features, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.branch1x1(x), self.branch5x5(x)
        c, d = self.branch3x3dbl(x), self.branch_pool(x)
        return _cat(a, b, c, d)  # (B, 224 + pool_features, H, W)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction (Figure 10): 3x3/2 | 1x1->3x3->3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl = nn.Sequential(
            BasicConv2d(in_channels, 64, 1),
            BasicConv2d(64, 96, 3, padding=1),
            BasicConv2d(96, 96, 3, stride=2),
        )
        self.branch_pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)
        return _cat(a, b, c)  # (B, 480 + in_channels, (H-3)/2 + 1, (W-3)/2 + 1)


def _conv7(in_channels: int, out_channels: int, vertical: bool) -> BasicConv2d:
    """A 7x1 (vertical) or 1x7 convolution: the factorised 7x7 of Figure 6."""
    if vertical:
        return BasicConv2d(in_channels, out_channels, (7, 1), padding=(3, 0))
    return BasicConv2d(in_channels, out_channels, (1, 7), padding=(0, 3))


class InceptionC(nn.Module):
    """17x17 module (Figure 6): 1x1 | 1x1->1x7->7x1 | 1x1->(7x1->1x7)x2 | avg-pool->1x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7 = nn.Sequential(
            BasicConv2d(in_channels, c7, 1), _conv7(c7, c7, False), _conv7(c7, 192, True)
        )
        self.branch7x7dbl = nn.Sequential(
            BasicConv2d(in_channels, c7, 1),
            _conv7(c7, c7, True),
            _conv7(c7, c7, False),
            _conv7(c7, c7, True),
            _conv7(c7, 192, False),
        )
        self.branch_pool = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1), BasicConv2d(in_channels, 192, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.branch1x1(x), self.branch7x7(x)
        c, d = self.branch7x7dbl(x), self.branch_pool(x)
        return _cat(a, b, c, d)  # (B, 768, H, W)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = nn.Sequential(
            BasicConv2d(in_channels, 192, 1), BasicConv2d(192, 320, 3, stride=2)
        )
        self.branch7x7x3 = nn.Sequential(
            BasicConv2d(in_channels, 192, 1),
            _conv7(192, 192, False),
            _conv7(192, 192, True),
            BasicConv2d(192, 192, 3, stride=2),
        )
        self.branch_pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = self.branch3x3(x), self.branch7x7x3(x), self.branch_pool(x)
        return _cat(a, b, c)  # (B, 512 + in_channels, (H-3)/2 + 1, (W-3)/2 + 1)


class SplitConv(nn.Module):
    """A 1x3 and a 3x1 convolution side by side, concatenated (Figure 7's expanded filters)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_1x3 = BasicConv2d(in_channels, out_channels, (1, 3), padding=(0, 1))
        self.conv_3x1 = BasicConv2d(in_channels, out_channels, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat(self.conv_1x3(x), self.conv_3x1(x))  # (B, 2 * out_channels, H, W)


class InceptionE(nn.Module):
    """8x8 module (Figure 7): 1x1 | 1x1->split | 1x1->3x3->split | avg-pool->1x1."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3 = nn.Sequential(BasicConv2d(in_channels, 384, 1), SplitConv(384, 384))
        self.branch3x3dbl = nn.Sequential(
            BasicConv2d(in_channels, 448, 1),
            BasicConv2d(448, 384, 3, padding=1),
            SplitConv(384, 384),
        )
        self.branch_pool = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1), BasicConv2d(in_channels, 192, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.branch1x1(x), self.branch3x3(x)
        c, d = self.branch3x3dbl(x), self.branch_pool(x)
        return _cat(a, b, c, d)  # (B, 2048, H, W)


class InceptionAux(nn.Module):
    """Side classifier on the 17x17 maps: pool to 5x5 -> 1x1 conv 128 -> 5x5 conv 768 -> fc.

    torchvision pools 5x5 with stride 3 (17x17 -> 5x5 at 299x299 input only); the adaptive
    pool gives 5x5 at any input size, with windows that differ by a pixel at 17x17.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)  # (B, 768, 1, 1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(self.pool(x)))
        return self.fc(self.flatten(x))  # (B, num_classes)


def _body(in_channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            [
                ("Conv2d_1a_3x3", BasicConv2d(in_channels, 32, 3, stride=2)),  # 299 -> 149
                ("Conv2d_2a_3x3", BasicConv2d(32, 32, 3)),  # 147
                ("Conv2d_2b_3x3", BasicConv2d(32, 64, 3, padding=1)),
                ("maxpool1", nn.MaxPool2d(3, stride=2)),  # 73
                ("Conv2d_3b_1x1", BasicConv2d(64, 80, 1)),
                ("Conv2d_4a_3x3", BasicConv2d(80, 192, 3)),  # 71
                ("maxpool2", nn.MaxPool2d(3, stride=2)),  # (B, 192, 35, 35)
                ("Mixed_5b", InceptionA(192, pool_features=32)),
                ("Mixed_5c", InceptionA(256, pool_features=64)),
                ("Mixed_5d", InceptionA(288, pool_features=64)),  # (B, 288, 35, 35)
                ("Mixed_6a", InceptionB(288)),  # (B, 768, 17, 17)
                ("Mixed_6b", InceptionC(768, channels_7x7=128)),
                ("Mixed_6c", InceptionC(768, channels_7x7=160)),
                ("Mixed_6d", InceptionC(768, channels_7x7=160)),
                ("Mixed_6e", InceptionC(768, channels_7x7=192)),  # the side classifier's input
                ("Mixed_7a", InceptionD(768)),  # (B, 1280, 8, 8)
                ("Mixed_7b", InceptionE(1280)),
                ("Mixed_7c", InceptionE(2048)),  # (B, 2048, 8, 8)
            ]
        )
    )


class InceptionV3(Classifier):
    """Stem -> 3x A -> B -> 4x C -> D -> 2x E -> global average pool -> dropout 0.5 -> linear.

    In training mode (with ``aux_logits``) the side classifier runs on Mixed_6e and its
    logits are kept on ``self.aux_outputs``; ``forward`` always returns the main logits.

    Args:
        in_channels: image channels.
        num_classes: outputs of the last layer.
        aux_logits: build the auxiliary classifier.
    """

    min_size = 75  # the last reduction (InceptionD) needs 3x3 maps; torchvision's min_size

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, aux_logits: bool = True):
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.features = _body(in_channels)
        self.num_features = 2048
        self.head = self._make_head(num_classes)
        self.aux_logits = aux_logits
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.aux_outputs: tuple[torch.Tensor, ...] = ()
        init_inception_weights(self, std=0.1)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(self.num_features, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        aux: list[torch.Tensor] = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if name == "Mixed_6e" and self.training and self.AuxLogits is not None:
                aux.append(self.AuxLogits(x))  # (B, num_classes)
        self.aux_outputs = tuple(aux)
        return x

    def auxiliary_loss(self, criterion: nn.Module, target: torch.Tensor) -> torch.Tensor:
        """0.4 x the side classifier's loss from the last training forward; clears it.

        Zero when there is none (eval mode or no aux head).
        """
        outputs, self.aux_outputs = self.aux_outputs, ()
        return weighted_aux_loss(outputs, criterion, target, AUX_WEIGHT)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.aux_logits:
            self.AuxLogits = InceptionAux(768, num_classes)


@register_model(
    "inception_v3",
    input_shape=(3, 299, 299),
    paper="Szegedy et al. 2016",
    year=2016,
    test_input_shape=(3, 75, 75),
)
def inception_v3(**kwargs: Any) -> InceptionV3:
    return InceptionV3(**kwargs)
