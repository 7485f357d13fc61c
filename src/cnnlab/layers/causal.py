"""Causal 1-D convolution (van den Oord et al. 2016, WaveNet) and its one-step queue
(Paine et al. 2016, "Fast Wavenet Generation Algorithm")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError


class CausalConv1d(nn.Conv1d):
    """A Conv1d whose output at time t sees only inputs at times <= t.

    The input is left-padded with (kernel_size - 1) * dilation zeros, so the output has
    the input's length; nothing is padded on the right, so no future sample leaks in.

    Args:
        in_channels: channels of the input (B, in_channels, L).
        out_channels: channels of the output (B, out_channels, L).
        kernel_size: taps, spaced ``dilation`` samples apart.
        dilation: spacing of the taps.
        bias: learn an additive bias per output channel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        for name, value in (("kernel_size", kernel_size), ("dilation", dilation)):
            if value < 1:
                raise ConfigError(f"Expected {name} >= 1, received {name}={value}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.left_padding = (kernel_size - 1) * dilation

    @property
    def receptive_field(self) -> int:
        """Input samples one output sample depends on: (kernel_size - 1) * dilation + 1."""
        return self.left_padding + 1

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ShapeMismatchError(
                f"CausalConv1d expects input (B, {self.in_channels}, L), received {tuple(x.shape)}"
            )
        return super().forward(F.pad(x, (self.left_padding, 0)))  # (B, out_channels, L)


class CausalQueue:
    """The past inputs one CausalConv1d needs to compute its next output sample alone.

    A ring buffer of the last (kernel_size - 1) * dilation + 1 inputs, zeros at first
    (the zeros ``CausalConv1d.forward`` pads with). Each call pushes one input column and
    returns the conv's output for it, reading only the kernel_size taps it needs: O(taps)
    work per sample, whatever the dilation.

    Args:
        conv: the layer whose weights are applied.
        batch: sequences generated side by side.
    """

    def __init__(self, conv: CausalConv1d, batch: int) -> None:
        self.conv = conv
        self.size = conv.left_padding + 1
        weight = conv.weight
        self.buffer = weight.new_zeros(batch, conv.in_channels, self.size)
        k, d = conv.kernel_size[0], conv.dilation[0]
        # Tap j of the kernel reads the input (k - 1 - j) * d samples back.
        self.lags = torch.arange(k - 1, -1, -1, device=weight.device) * d
        self.weight = weight.reshape(conv.out_channels, -1)  # (out, in * k), in-major
        self.t = 0  # samples pushed so far

    def __call__(self, x_t: Tensor) -> Tensor:
        """One input column (B, in_channels) -> the output column (B, out_channels)."""
        self.buffer[:, :, self.t % self.size] = x_t
        taps = self.buffer[:, :, (self.t - self.lags) % self.size]  # (B, in, k)
        self.t += 1
        return F.linear(taps.reshape(len(taps), -1), self.weight, self.conv.bias)
