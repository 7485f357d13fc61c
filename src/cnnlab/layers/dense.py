"""DenseNet building blocks (Huang et al. 2017): dense layer, dense block, transition."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.layers.arithmetic import check_positive


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1×1(bn_size·k)-BN-ReLU-Conv3×3(k); returns the k new feature maps only.

    Args:
        in_channels: channels of the concatenated input.
        growth_rate: k, new channels this layer adds.
        bottleneck: use the 1×1 bottleneck (DenseNet-B); else BN-ReLU-Conv3×3 only.
        bn_size: bottleneck width multiplier (4 in the paper).
    """

    def __init__(
        self, in_channels: int, growth_rate: int, bottleneck: bool = True, bn_size: int = 4
    ) -> None:
        super().__init__()
        check_positive("growth_rate", [growth_rate])
        layers: list[nn.Module] = []
        width = in_channels
        if bottleneck:
            width = bn_size * growth_rate
            layers += [
                nn.BatchNorm2d(in_channels),
                nn.ReLU(),
                nn.Conv2d(in_channels, width, 1, bias=False),
            ]
        layers += [
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, growth_rate, 3, padding=1, bias=False),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DenseBlock(nn.Module):
    """``num_layers`` dense layers, each fed the concatenation of all earlier feature maps.

    Output channels = in_channels + num_layers · growth_rate.

    Args:
        num_layers: dense layers in the block.
        in_channels: input channels.
        growth_rate: k, channels added per layer.
        bottleneck: use 1×1 bottlenecks (DenseNet-B).
    """

    def __init__(
        self, num_layers: int, in_channels: int, growth_rate: int, bottleneck: bool = True
    ) -> None:
        super().__init__()
        check_positive("num_layers", [num_layers])
        self.out_channels = in_channels + num_layers * growth_rate
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck)
            for i in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)  # (B, in + L·k, H, W)


class Transition(nn.Module):
    """Between dense blocks: BN-ReLU-Conv1×1 then 2×2 average pooling (halves H and W).

    Args:
        in_channels: input channels.
        out_channels: output channels (compression θ·in_channels in DenseNet-C).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.act(self.norm(x)))
        return self.pool(x)
