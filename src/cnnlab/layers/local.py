"""Locally connected 2-D layer: a convolution's receptive fields without weight sharing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.layers.arithmetic import IntOrTuple, check_positive, conv_output_size, expand
from cnnlab.layers.conv import check_input


class LocallyConnected2d(nn.Module):
    """Like a 2-D convolution, but every output position has its own filter bank.

    A conv shares one kernel across positions (parameter sharing); here each of the
    L = out_h·out_w positions learns its own, so the weight count is the conv's
    times L. The bias is per output channel *and* position (out_channels·L values),
    as in Keras' LocallyConnected2D, so the total is conv_params(...)·L.
    The input size must be fixed at construction.

    Args:
        in_channels: input channels.
        out_channels: filters per position.
        input_size: (H, W) of the input, or an int for a square input.
        kernel_size: window size.
        stride: window step.
        padding: zeros added on each side.
        bias: per-position, per-channel bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: IntOrTuple,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive("in_channels", [in_channels])
        check_positive("out_channels", [out_channels])
        self.in_channels = in_channels
        self.input_size = expand(input_size, 2, "input_size")
        self.kernel_size = expand(kernel_size, 2, "kernel_size")
        self.stride = expand(stride, 2, "stride")
        self.padding = expand(padding, 2, "padding")
        out = conv_output_size(self.input_size, self.kernel_size, self.stride, self.padding)
        assert isinstance(out, tuple)
        self.output_size: tuple[int, ...] = out
        positions = math.prod(out)
        fan_in = in_channels * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)  # nn.Conv2d's default init range
        # weight: (L, out_channels, in_channels·kh·kw), bias: (out_channels, out_h, out_w)
        self.weight = nn.Parameter(
            torch.empty(positions, out_channels, fan_in).uniform_(-bound, bound)
        )
        self.bias = (
            nn.Parameter(torch.empty(out_channels, *out).uniform_(-bound, bound)) if bias else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, 2, "LocallyConnected2d")
        if tuple(x.shape[2:]) != self.input_size:
            raise ShapeMismatchError(
                f"LocallyConnected2d expected spatial size {self.input_size}, received shape {tuple(x.shape)}"
            )
        cols = F.unfold(
            x, self.kernel_size, padding=self.padding, stride=self.stride
        )  # (B, C·kh·kw, L)
        y = torch.einsum("bkl,lok->bol", cols, self.weight)  # (B, out_channels, L)
        y = y.reshape(x.shape[0], -1, *self.output_size)  # (B, out_channels, out_h, out_w)
        return y if self.bias is None else y + self.bias
