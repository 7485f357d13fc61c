"""Receptive fields by backpropagation: equal to cnnlab summary's recursion on plain
stacks, and on residual networks equal to what perturbing the input can change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.receptive import conv_arithmetic, receptive_field
from cnnlab.inspect.summary import summary


def plain_stack() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 5, stride=2, padding=2), nn.GELU(),
    ).eval()  # fmt: skip


class Residual(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus the identity; then a 2x2 max pool: rf 5, then 6."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.b(torch.relu(self.a(x))) + x))


@pytest.mark.parametrize("layer", ["0", "3", "6", "7"])
def test_plain_stack_matches_the_summary_recursion(layer: str) -> None:
    net = plain_stack()
    rows = {r.name: r for r in summary(net, (1, 64, 64))}
    out = receptive_field(net, torch.randn(1, 1, 64, 64), layer, (5, 6))
    rf, jump = rows[layer].rf, rows[layer].jump
    assert out["size"] == [rf, rf]
    # neighbouring cells' fields are `jump` apart
    right = receptive_field(net, torch.randn(1, 1, 64, 64), layer, (5, 7))
    assert right["box"][1][0] - out["box"][1][0] == jump and right["box"][0] == out["box"][0]


def perturbation_field(model: nn.Module, size: int, cell: tuple[int, int]) -> torch.Tensor:
    """Pixels whose change changes the cell, over several random inputs and both signs:
    the oracle, by brute force (one forward per pixel)."""
    hit = torch.zeros(size, size, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(6):
            base = torch.randn(1, 2, size, size, generator=gen)
            ref = model(base)[0, :, cell[0], cell[1]]
            for sign in (-40.0, 40.0):
                batch = base.repeat(size * size, 1, 1, 1)
                idx = torch.arange(size * size)
                batch[idx, :, idx // size, idx % size] += sign
                out = model(batch)[:, :, cell[0], cell[1]]
                hit |= ((out - ref).abs().amax(1) > 1e-6).view(size, size)
    return hit


def test_residual_field_is_what_perturbation_can_change() -> None:
    net = Residual().eval()
    x = torch.randn(1, 2, 16, 16)
    out = receptive_field(net, x, "pool", (3, 4))
    oracle = perturbation_field(net, 16, (3, 4))
    assert out["size"] == [6, 6]  # 5 through the two convs, 6 after the 2x2 pool
    assert torch.equal(out["mask"], oracle)
    # a clipped cell at the border
    corner = receptive_field(net, x, "pool", (0, 0))
    # the pool window 0-1, then 2 more per conv side, clipped at 0
    assert corner["box"] == [[0, 3], [0, 3]]


def test_resnet_mini_field_grows_through_the_blocks_and_stays_inside() -> None:
    model = cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1).eval()
    x = torch.randn(1, 1, 28, 28)
    sizes = [receptive_field(model, x, name, (1, 1))["size"][0] for name in
             ("features.0", "features.3", "features.6")]  # fmt: skip
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] <= 28


def test_conv_arithmetic_is_the_dot_product_the_model_computed() -> None:
    net = plain_stack()
    x = torch.randn(1, 1, 64, 64)
    for cell in [(0, 0), (10, 13), (15, 15)]:
        math = conv_arithmetic(net, x, "6", cell, channel=2)
        assert math["patch"].shape == (4, 5, 5)
        assert math["sum"] == pytest.approx(math["output"], abs=1e-5)
    with pytest.raises(ConfigError, match="Conv2d"):
        conv_arithmetic(net, x, "2", (0, 0), 0)
    with pytest.raises(ShapeMismatchError, match="inside"):
        conv_arithmetic(net, x, "6", (10, 17), 0)


def test_bad_cells_and_inputs_are_refused() -> None:
    net = plain_stack()
    with pytest.raises(ShapeMismatchError, match="outside"):
        receptive_field(net, torch.randn(1, 1, 64, 64), "6", (16, 0))
    with pytest.raises(ShapeMismatchError, match="one input"):
        receptive_field(net, torch.randn(2, 1, 64, 64), "6", (0, 0))
