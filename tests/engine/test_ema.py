"""The weight EMA against the recurrence written out in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.engine.ema import WeightEMA


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def _expected(values: list[np.ndarray], decay: float, every: int) -> np.ndarray:
    average, updates = values[0].copy(), 0
    for step, value in enumerate(values[1:], start=1):
        if step % every:
            continue
        updates += 1
        d = min(decay, (1 + updates) / (10 + updates))
        average = d * average + (1 - d) * value
    return average


@pytest.mark.parametrize(("decay", "every"), [(0.9, 1), (0.99, 1), (0.5, 3)])
def test_average_follows_the_recurrence(decay: float, every: int) -> None:
    net = _net()
    ema = WeightEMA(net, decay=decay, every=every)
    weights = [net[0].weight.detach().double().numpy().copy()]
    generator = torch.Generator().manual_seed(1)
    for _ in range(40):
        with torch.no_grad():
            net[0].weight.add_(torch.randn(net[0].weight.shape, generator=generator))
        weights.append(net[0].weight.detach().double().numpy().copy())
        ema.update(net)
    got = ema.average["0.weight"].double().numpy()
    np.testing.assert_allclose(got, _expected(weights, decay, every), rtol=1e-5, atol=1e-5)
    assert ema.updates == 40 // every


def test_integer_buffers_are_copied_not_averaged() -> None:
    net = _net()
    ema = WeightEMA(net, decay=0.9)
    net.train()
    for _ in range(5):
        net(torch.randn(8, 3))
        ema.update(net)
    assert int(ema.average["1.num_batches_tracked"]) == 5
    assert not torch.equal(ema.average["1.running_mean"], net[1].running_mean)


def test_swapped_in_evaluates_the_average_and_restores_the_weights() -> None:
    net = _net().eval()
    ema = WeightEMA(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update(net)
    own = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 3)
    reference = _net().eval()
    reference.load_state_dict(ema.average)
    with ema.swapped_in(net):
        torch.testing.assert_close(net(x), reference(x))
    for k, v in net.state_dict().items():
        assert torch.equal(v, own[k]), k


def test_state_dict_round_trip() -> None:
    net = _net()
    ema = WeightEMA(net, decay=0.9, every=2)
    for _ in range(7):
        with torch.no_grad():
            net[0].bias.add_(0.1)
        ema.update(net)
    restored = WeightEMA(_net(), decay=0.9, every=2)
    restored.load_state_dict(ema.state_dict())
    assert (restored.steps, restored.updates) == (7, 3)
    for k, v in ema.average.items():
        assert torch.equal(restored.average[k], v)
    with pytest.raises(ConfigError, match="lacks"):
        restored.load_state_dict({})


@pytest.mark.parametrize(("decay", "every"), [(1.0, 1), (-0.1, 1), (0.9, 0)])
def test_bad_settings_are_refused(decay: float, every: int) -> None:
    with pytest.raises(ConfigError, match="received"):
        WeightEMA(_net(), decay=decay, every=every)
