"""Speech classifiers on waveforms (B, 1, L): a 2-D CNN on log-mel spectrograms computed
inside the network, and M5, a 1-D CNN on the raw samples (Dai, Dai, Qu, Li & Das 2017,
"Very deep convolutional neural networks for raw waveforms").

The spectrogram is part of the model, so a saved model takes audio as it comes (the WAV
samples) and its export includes the front end; SpecAugment masks it in training only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.layers.audio import LogMel, SpecAugment
from cnnlab.models.base import Classifier, check_num_classes
from cnnlab.models.registry import register_model


def check_waveform(model: nn.Module, x: torch.Tensor, in_channels: int, min_length: int) -> None:
    """Raise ShapeMismatchError unless ``x`` is (B, in_channels, L >= min_length)."""
    if x.dim() != 3 or x.shape[1] != in_channels or x.shape[2] < min_length:
        raise ShapeMismatchError(
            f"{type(model).__name__} expects waveforms (B, {in_channels}, L >= {min_length}), "
            f"received {tuple(x.shape)}"
        )


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers, then 2x2 max-pooling (frequency and time halve)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class UtteranceNorm(nn.Module):
    """(B, 1, F, T) log-mel -> each band minus its mean over time, divided by the map's std."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=-1, keepdim=True)
        return x / (x.std(dim=(-2, -1), keepdim=True) + self.eps)


class SpectrogramCNN(Classifier):
    """Waveform -> log-mel (B, 1, n_mels, frames) -> [SpecAugment] -> VGG-style blocks.

    Args:
        in_channels: waveform channels; must be 1 (mono).
        num_classes: outputs.
        sample_rate: Hz of the input samples.
        n_mels: mel bands; n_fft and hop_length in samples (32 ms windows, 10 ms hops at
            8 kHz by default).
        widths: output channels of each conv block.
        spec_augment: frequency and time masks during training.
        dropout: before the linear layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        sample_rate: int = 8000,
        n_fft: int = 256,
        hop_length: int = 80,
        n_mels: int = 40,
        widths: tuple[int, ...] = (32, 64, 128),
        spec_augment: bool = True,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        self.width = widths[-1]
        self.min_size = n_fft
        # top_db: digital silence (the padding after a short word) floors 80 dB under the
        # recording's peak instead of log(eps), far below anything a microphone records.
        self.front = LogMel(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
            top_db=80.0,
        )  # fmt: skip
        # Per recording: each band's mean over time is removed and the whole map scaled to
        # unit variance (cepstral mean normalisation): what is constant over a recording
        # (the microphone, the room, much of the voice) leaves no trace.
        self.norm = UtteranceNorm()
        self.augment = SpecAugment(freq_width=n_mels // 8, time_width=10) if spec_augment else None
        blocks, previous = [], 1
        for width in widths:
            blocks.append(conv_block(previous, width))
            previous = width
        self.features = nn.Sequential(*blocks)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(self.dropout),
            nn.Linear(self.width, num_classes),
        )  # fmt: skip

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, L) waveforms -> normalised log-mel (B, 1, n_mels, frames)."""
        self.check_input(x)
        return self.norm(self.front(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spectrogram(x)
        if self.augment is not None:
            s = self.augment(s)
        return self.features(s)  # (B, C, n_mels / 2^blocks, frames / 2^blocks)

    def check_input(self, x: torch.Tensor) -> None:
        check_waveform(self, x, self.in_channels, self.min_size)


class M5(Classifier):
    """Raw-waveform CNN: one wide strided conv (80 samples, stride 4), then 3-wide convs,
    each followed by BN, ReLU and 4x max-pooling; global average pooling; linear.

    Args:
        in_channels: waveform channels.
        num_classes: outputs.
        width: channels of the first two convs (the last two have 2x and 4x).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 128) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.in_channels, self.num_classes, self.width = in_channels, num_classes, 4 * width
        self.min_size = 4 * 4 * 4 * 4 * 4 + 80  # every pooling keeps at least one step
        plan = [(in_channels, width, 80, 4), (width, width, 3, 1), (width, 2 * width, 3, 1)]
        plan.append((2 * width, 4 * width, 3, 1))
        layers: list[nn.Module] = []
        for cin, cout, kernel, stride in plan:
            layers += [
                nn.Conv1d(
                    cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 38
                ),
                nn.BatchNorm1d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(4),
            ]
        self.features = nn.Sequential(*layers)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(self.width, num_classes)
        )

    def check_input(self, x: torch.Tensor) -> None:
        check_waveform(self, x, self.in_channels, self.min_size)


@register_model(
    "spectrogram_cnn", input_shape=(1, 8000), test_input_shape=(1, 2000), paper="log-mel CNN (Park et al. 2019 SpecAugment)",
    year=2019,
)  # fmt: skip
def spectrogram_cnn(**kwargs: Any) -> SpectrogramCNN:
    return SpectrogramCNN(**kwargs)


@register_model(
    "m5", input_shape=(1, 8000), test_input_shape=(1, 2000), paper="Dai et al. 2017", year=2017
)
def m5(**kwargs: Any) -> M5:
    return M5(**kwargs)
