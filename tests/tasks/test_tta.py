"""Test-time augmentation views and their weighted average."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.tasks.tta import shift, tta_log_probs, tta_mode


def test_modes() -> None:
    assert tta_mode(True) == "flip"
    assert tta_mode(False) == "none"
    assert tta_mode(None) == "none"
    assert tta_mode("flip-shift") == "flip-shift"
    with pytest.raises(ConfigError, match="received 'mirror'"):
        tta_mode("mirror")


def test_shift_moves_pixels_and_repeats_the_edge() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    right_down = shift(x, 1, 1)
    assert torch.equal(right_down[0, 0, 1:, 1:], x[0, 0, :3, :3])
    assert torch.equal(right_down[0, 0, 0, 1:], x[0, 0, 0, :3])  # top edge repeated
    left_up = shift(x, -1, -1)
    assert torch.equal(left_up[0, 0, :3, :3], x[0, 0, 1:, 1:])
    assert torch.equal(shift(x, 0, 0), x)


class _Spy(nn.Module):
    """Logits = a fixed linear map of the image; remembers each input it saw."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(16, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("mode", ["none", "flip", "flip-shift"])
def test_log_probs_are_the_weighted_mean_of_the_views(mode: str) -> None:
    model = _Spy()
    x = torch.randn(5, 1, 4, 4)
    got = tta_log_probs(model, x, mode).exp()
    views = {"none": 1, "flip": 2, "flip-shift": 6}[mode]
    assert len(model.seen) == views
    probs = [model.linear(v.flatten(1)).softmax(1) for v in model.seen]
    weights = [1.0] * views if views < 6 else [0.25, 0.25] + [0.125] * 4
    expected = sum(w * p for w, p in zip(weights, probs, strict=True)) / sum(weights)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.sum(1), torch.ones(5))
    if mode != "none":
        assert torch.equal(model.seen[1], x.flip(3))
    if mode == "flip-shift":
        assert torch.equal(model.seen[2], shift(x, -1, -1))
        assert math.isclose(sum(weights), 1.0)
