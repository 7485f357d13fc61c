"""Output-size, 'same'-padding, parameter and MAC arithmetic against what PyTorch computes."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.layers import Conv2d, conv_macs, conv_output_size, conv_params, same_padding


@settings(max_examples=50, deadline=None)
@given(
    size=st.integers(1, 20),
    kernel=st.integers(1, 6),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
)
def test_output_size_matches_torch(
    size: int, kernel: int, stride: int, padding: int, dilation: int
) -> None:
    if dilation * (kernel - 1) + 1 > size + 2 * padding:
        with pytest.raises(ConfigError, match="Expected the effective kernel size"):
            conv_output_size(size, kernel, stride, padding, dilation)
        return
    conv = nn.Conv1d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    expected = conv(torch.zeros(1, 1, size)).shape[-1]
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected


def test_output_size_per_dimension() -> None:
    conv = nn.Conv2d(1, 1, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    expected = tuple(conv(torch.zeros(1, 1, 9, 7)).shape[2:])
    assert conv_output_size((9, 7), (3, 2), (2, 1), (1, 0), (1, 2)) == expected == (5, 5)


def test_seed_examples() -> None:
    # Seed 002: a 7x7 input, 3x3 filter, stride 1 pad 0 -> 5x5; stride 2 -> 3x3.
    assert conv_output_size(7, 3, 1, 0) == 5
    assert conv_output_size(7, 3, 2, 0, strict=True) == 3
    # 227x227 input, F=11, S=4, P=0 -> 55 (AlexNet's first layer).
    assert conv_output_size(227, 11, 4, 0, strict=True) == 55


def test_strict_rejects_w10_f3_s2_with_numbers() -> None:
    # Seed 002: "we cannot have W = 10, P = 0, F = 3 and S = 2".
    with pytest.raises(ConfigError, match=r"\(10 - 3 \+ 2\*0\)/2 \+ 1 = 4\.5 is not an integer"):
        conv_output_size(10, 3, 2, 0, strict=True)
    assert conv_output_size(10, 3, 2, 0) == 4  # PyTorch's floor, when not strict


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 0}, "Expected kernel_size > 0, received kernel_size=0"),
        ({"stride": 0}, "Expected stride > 0, received stride=0"),
        ({"dilation": -1}, "Expected dilation > 0, received dilation=-1"),
        ({"padding": -2}, "Expected padding >= 0, received padding=-2"),
        (
            {"kernel_size": (3, 3, 3)},
            r"Expected kernel_size to be an int or 1 ints, received kernel_size=\(3, 3, 3\)",
        ),
    ],
)
def test_output_size_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"size": 8, "kernel_size": 3} | kwargs
    with pytest.raises(ConfigError, match=message):
        conv_output_size(**args)


@settings(max_examples=50, deadline=None)
@given(
    size=st.integers(1, 30),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
)
def test_same_padding_gives_ceil(size: int, kernel: int, stride: int, dilation: int) -> None:
    before, after = same_padding(size, kernel, stride, dilation)
    assert 0 <= after - before <= 1  # TensorFlow puts the odd element after
    out = conv_output_size(size + before + after, kernel, stride, 0, dilation)
    assert out == math.ceil(size / stride)


def test_same_padding_known_values() -> None:
    # TensorFlow: in 7, k 3, s 2 -> out 4, total pad 2 -> (1, 1); in 8, k 3, s 2 -> total 1 -> (0, 1).
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(8, 3, 2) == (0, 1)
    assert same_padding(8, 4, 1) == (1, 2)
    assert same_padding(5, 1, 3) == (0, 0)


@pytest.mark.parametrize(("f", "d1", "k"), [(3, 3, 10), (5, 3, 6), (11, 3, 96), (1, 64, 32)])
def test_seed_params_formula(f: int, d1: int, k: int) -> None:
    # Seed 002: a conv layer has (F·F·D1 + 1)·K parameters.
    expected = (f * f * d1 + 1) * k
    layer = Conv2d(d1, k, f)
    assert sum(p.numel() for p in layer.parameters()) == expected
    assert conv_params(d1, k, f) == expected


def test_conv_params_groups_and_no_bias() -> None:
    conv = nn.Conv2d(8, 12, (3, 5), groups=4, bias=False)
    assert conv_params(8, 12, (3, 5), bias=False, groups=4) == conv.weight.numel() == 3 * 5 * 2 * 12
    with pytest.raises(ConfigError, match="in_channels=6, out_channels=4, groups=4"):
        conv_params(6, 4, 3, groups=4)


def test_conv_macs() -> None:
    # AlexNet conv1: 55·55 outputs × 96 filters × 11·11·3 taps = 105,415,200 MACs.
    assert conv_macs(3, 96, 11, 55) == 105_415_200
    # Depthwise 3x3 on 32 channels at 10x10: 9 MACs per output value.
    assert conv_macs(32, 32, 3, (10, 10), groups=32) == 9 * 32 * 100
