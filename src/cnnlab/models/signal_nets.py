"""1-D CNNs for raw vibration signals: WDCNN (Zhang, Peng, Li, Chen & Zhang 2017, "A New Deep
Learning Model for Fault Diagnosis with Good Anti-Noise and Domain Adaptation Ability on Raw
Vibration Signals", Sensors 17(2):425) and a plain 1-D ResNet (after He et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


def check_signal(model: nn.Module, x: torch.Tensor, in_channels: int, length: int | None) -> None:
    """Raise ShapeMismatchError unless ``x`` is (B, in_channels, length) (any L when None)."""
    if x.dim() != 3 or x.shape[1] != in_channels or (length is not None and x.shape[2] != length):
        expected = f"(B, {in_channels}, {'L' if length is None else length})"
        raise ShapeMismatchError(
            f"{type(model).__name__} expects input {expected}, received {tuple(x.shape)}"
        )


# WDCNN, the paper's Table 1 as (out_channels, kernel_size, stride, padding); every conv is
# followed by BatchNorm, ReLU and max-pool 2. Lengths for a 2048-sample input after conv ->
# pool: 128 -> 64, 64 -> 32, 32 -> 16, 16 -> 8, 6 -> 3.
WDCNN_CONVS = [
    (16, 64, 16, 24),  # the wide first kernel: a learned filter bank over 64 samples (5 ms)
    (32, 3, 1, 1),
    (64, 3, 1, 1),
    (64, 3, 1, 1),
    (64, 3, 1, 0),  # unpadded in the table: 8 -> 6
]


class WDCNN(Classifier):
    """Deep CNN with Wide first-layer kernels: five conv-BN-ReLU-pool stages, FC 100, output.

    Convs and the FC 100 layer have no bias: the BatchNorm after each one (the paper puts
    BN after every conv and the fully connected layer) has its own shift. The head
    flattens 64 x 3 features, so the model is built for one ``input_size``.

    Args:
        in_channels: Accelerometer channels.
        num_classes: Outputs of the last layer (10 for the CWRU task).
        input_size: Samples per window L the model is built for (the paper's 2048).
        hidden: Width of the fully connected layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 2048,
        hidden: int = 100,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.input_size, self.hidden = input_size, hidden
        layers: list[nn.Module] = []
        channels, length = in_channels, input_size
        for out_channels, kernel_size, stride, padding in WDCNN_CONVS:
            layers += [
                nn.Conv1d(channels, out_channels, kernel_size, stride, padding, bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2),
            ]
            length = ((length + 2 * padding - kernel_size) // stride + 1) // 2
            channels = out_channels
        if length < 1:
            raise ConfigError(
                f"WDCNN needs input_size >= 1024 (its convs and pools leave nothing of less), "
                f"received input_size={input_size}"
            )
        self.features = nn.Sequential(*layers)
        self.num_features = channels * length  # 64 * 3 = 192 for 2048 samples
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.num_features, self.hidden, bias=False),
            nn.BatchNorm1d(self.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden, num_classes),
        )

    def check_input(self, x: torch.Tensor) -> None:
        check_signal(self, x, self.in_channels, self.input_size)


def conv3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv1d:
    # No bias: the BatchNorm that follows has its own shift.
    return nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock1d(nn.Module):
    """Two 3-wide convs; the input is added back (through a 1-wide conv when shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = conv3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm1d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet1d(Classifier):
    """Stem -> [stage of basic blocks] x len(widths) -> global average pool -> linear.

    The stem (conv stride 2, max-pool stride 2) takes 2048 samples to 512; every stage
    after the first halves the length again (512, 256, 128, 64 with the defaults). Global
    pooling lets it take any length.

    Args:
        in_channels: Accelerometer channels.
        num_classes: Outputs of the last layer.
        widths: Channels of each stage.
        blocks: Basic blocks per stage.
        stem_kernel: Width of the stem conv; wider than images' 7 because a 12 kHz signal
            moves less per sample than an image does per pixel.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1, 1),
        stem_kernel: int = 15,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if len(widths) != len(blocks) or not widths or stem_kernel < 1:
            raise ConfigError(
                f"Expected one block count per stage and stem_kernel >= 1, received "
                f"widths={list(widths)}, blocks={list(blocks)}, stem_kernel={stem_kernel}"
            )
        self.in_channels, self.num_classes = in_channels, num_classes
        stem = [
            nn.Conv1d(in_channels, widths[0], stem_kernel, 2, stem_kernel // 2, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),
        ]
        stages: list[nn.Module] = []
        channels = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(count):
                stages.append(BasicBlock1d(channels, width, 2 if i > 0 and j == 0 else 1))
                channels = width
        self.features = nn.Sequential(*stem, *stages)
        self.num_features = channels
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(self.num_features, num_classes),
        )

    def check_input(self, x: torch.Tensor) -> None:
        check_signal(self, x, self.in_channels, None)


@register_model(
    "wdcnn",
    input_shape=(1, 2048),
    paper="Zhang et al. 2017",
    year=2017,
    fixed_input=True,
    task="classify",
)
def wdcnn(**kwargs: Any) -> WDCNN:
    return WDCNN(**kwargs)


@register_model(
    "resnet1d",
    input_shape=(1, 2048),
    paper="He et al. 2016",
    year=2016,
    test_input_shape=(1, 256),
    task="classify",
)
def resnet1d(**kwargs: Any) -> ResNet1d:
    return ResNet1d(**kwargs)
