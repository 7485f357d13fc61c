"""The fast-mask dropout: the Bernoulli statistics of nn.Dropout, its scaling and gradient."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.layers.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.8])
def test_keep_rate_and_independence_match_bernoulli(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_000
    kept = keep_mask((n,), p).double()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(kept.mean().item() - (1 - p)) < 5 * sd
    # Neighbours come from the two halves of one 32-bit draw: they must be independent.
    both = (kept[0::2] * kept[1::2]).mean().item()
    sd_both = math.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / (n // 2))
    assert abs(both - (1 - p) ** 2) < 5 * sd_both


def test_scaling_gradient_and_layout() -> None:
    torch.manual_seed(1)
    x = torch.rand(8, 6, 5, 5).contiguous(memory_format=torch.channels_last) + 0.5
    x.requires_grad_(True)
    out = dropout(x, 0.25)
    assert out.is_contiguous(memory_format=torch.channels_last)
    ratio = out.detach() / x.detach()
    values = set(torch.round(ratio * 1e4).unique().tolist())
    assert values == {0.0, round(1e4 / 0.75)}  # dropped, or kept and scaled by 1/(1-p)
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, ratio)  # d out / d x is the scaled mask
    assert abs(dropout(torch.ones(400_000), 0.25).mean().item() - 1) < 0.01


def test_reproducible_and_identity_when_off() -> None:
    x = torch.randn(4, 3, 7, 7)
    torch.manual_seed(5)
    a = dropout(x, 0.5)
    torch.manual_seed(5)
    assert torch.equal(a, dropout(x, 0.5))
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(x, 0.0) is x
    assert "p=0.5" in repr(layer)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability(p: float) -> None:
    with pytest.raises(ConfigError, match=f"received p={p}"):
        Dropout(p)
