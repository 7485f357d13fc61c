"""Residual, highway, squeeze-excitation and inverted-residual blocks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers.arithmetic import check_positive
from cnnlab.layers.conv import Conv2d

LayerFactory = Callable[..., nn.Module]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias (a norm layer follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias (a norm layer follows)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ResidualBlock(nn.Module):
    """ResNet basic block (He et al. 2016): y = act(F(x) + shortcut(x)).

    The shortcut is the identity when shapes match, else a strided 1×1
    convolution plus norm (the projection shortcut, option B in the paper).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first 3×3 conv and of the projection.
        norm_layer: norm module factory, called with a channel count.
        act_layer: activation module factory.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        check_positive("stride", [stride])
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = norm_layer(out_channels)
        self.act1 = act_layer()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = norm_layer(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv1x1(in_channels, out_channels, stride), norm_layer(out_channels)
            )
        self.act2 = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


class HighwayConv2d(nn.Module):
    """Convolutional highway layer (Srivastava et al. 2015): y = T·H(x) + (1 − T)·x.

    T = sigmoid(conv_T(x)) is the transform gate. Its bias starts negative so the
    layer begins by carrying x through (the paper suggests −1 to −3), which lets
    very deep stacks train.

    Args:
        channels: input and output channels.
        kernel_size: odd window of both convolutions ('same' padding).
        gate_bias: initial bias of the gate convolution.
        act_layer: activation of H.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        gate_bias: float = -1.0,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.transform = Conv2d(channels, channels, kernel_size, padding="same")
        self.act = act_layer()
        self.gate = Conv2d(channels, channels, kernel_size, padding="same")
        gate_bias_param = self.gate.conv.bias
        assert gate_bias_param is not None
        nn.init.constant_(gate_bias_param, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.transform(x))
        t = torch.sigmoid(self.gate(x))
        return t * h + (1 - t) * x


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): rescale channels by a learned gate in (0, 1).

    Args:
        channels: input and output channels.
        reduction: hidden width is channels // reduction (at least 1).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        check_positive("channels", [channels])
        check_positive("reduction", [reduction])
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel gate, shape (B, C, 1, 1)."""
        s = self.pool(x)  # squeeze: (B, C, 1, 1)
        s = self.act(self.fc1(s))
        return torch.sigmoid(self.fc2(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018): expand 1×1, depthwise 3×3, linear 1×1 project.

    ReLU6 after the expansion and the depthwise conv; no activation after the
    projection (the linear bottleneck). The residual is added only when
    stride == 1 and in_channels == out_channels.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: depthwise stride, 1 or 2.
        expand_ratio: hidden width = in_channels · expand_ratio (1 skips the expansion).
        norm_layer: norm module factory.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: int,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"Expected stride in (1, 2), received stride={stride}")
        check_positive("expand_ratio", [expand_ratio])
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [conv1x1(in_channels, hidden), norm_layer(hidden), nn.ReLU6()]
        depthwise = nn.Conv2d(
            hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False
        )
        layers += [depthwise, norm_layer(hidden), nn.ReLU6()]
        layers += [conv1x1(hidden, out_channels), norm_layer(out_channels)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y
