"""The seeds' counting formulas (reference engine) agree with the layer library's counts."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.layers import Conv2d
from cnnlab.layers.arithmetic import conv_macs, conv_output_size, conv_params
from cnnlab.reference.conv import conv_flops, conv_param_count


@settings(max_examples=30, deadline=None)
@given(
    kernel=st.integers(1, 5),
    in_channels=st.integers(1, 8),
    out_channels=st.integers(1, 8),
    size=st.integers(5, 16),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
)
def test_params_and_flops_formulas_match_the_layers(
    kernel: int, in_channels: int, out_channels: int, size: int, stride: int, padding: int
) -> None:
    layer = Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding)
    counted = sum(p.numel() for p in layer.parameters())
    # Seed 002: (F*F*D1 + 1) * K parameters.
    assert conv_param_count(kernel, in_channels, out_channels) == counted
    assert conv_params(in_channels, out_channels, kernel) == counted
    out = layer(torch.zeros(1, in_channels, size, size))
    h, w = out.shape[2:]
    assert h == conv_output_size(size, kernel, stride, padding)
    # 2 FLOPs per multiply-add: the reference's FLOPs are twice the layer library's MACs.
    assert conv_flops(kernel, in_channels, out_channels, h, w) == 2 * conv_macs(
        in_channels, out_channels, kernel, (h, w)
    )
