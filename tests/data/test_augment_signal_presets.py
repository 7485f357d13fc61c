"""`build_augment` for each kind of input (images, signals, token ids) and RandomSpeed
against NumPy's linear interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.core.errors import ConfigError, UnknownNameError
from cnnlab.data.augment import Augment, RandomFlip, build_augment
from cnnlab.data.augment_signal import (
    AddNoise,
    RandomAmplitude,
    RandomSpeed,
    RandomTimeShift,
    SignalAugment,
)
from cnnlab.engine.trainer import input_kind


def signals(b: int = 6, c: int = 2, length: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, length, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- build_augment -----------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", ["signals", "tokens"])
def test_auto_is_no_augmentation_for_signals_and_tokens(inputs: str) -> None:
    assert build_augment("auto", inputs) is None
    assert build_augment(" AUTO ", inputs) is None


def test_auto_flips_images() -> None:
    aug = build_augment("auto", "images")
    assert isinstance(aug, Augment) and aug.ops == [RandomFlip()]
    x = torch.rand(100, 1, 3, 4, generator=gen(1))
    out = aug(x, gen())
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all() and flipped.any() and kept.any()


@pytest.mark.parametrize(
    ("x", "kind", "expected"),
    [
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "images", Augment),
        (torch.zeros(2, 1, 64), "signals", type(None)),
        (torch.zeros(2, 20, dtype=torch.int64), "tokens", type(None)),
    ],
)
def test_the_trainer_picks_the_kind_from_the_batch(
    x: torch.Tensor, kind: str, expected: type
) -> None:
    assert input_kind(x) == kind
    assert isinstance(build_augment("auto", input_kind(x)), expected)


def test_an_image_preset_for_signals_names_the_signal_presets() -> None:
    with pytest.raises(UnknownNameError) as error:
        build_augment("flip", "signals")
    message = str(error.value)
    assert "'flip'" in message
    for preset in ("amplitude", "noise", "speed", "timeshift"):
        assert preset in message


def test_signal_presets_build_a_signal_pipeline_in_order() -> None:
    aug = build_augment("timeshift,noise", "signals")
    assert isinstance(aug, SignalAugment)
    assert aug.ops == [RandomTimeShift(), AddNoise()]
    spec = ["amplitude", {"name": "speed", "low": 0.8, "high": 1.25}, "timeshift"]
    aug = build_augment(spec, "signals")
    assert isinstance(aug, SignalAugment)
    assert aug.ops == [RandomAmplitude(), RandomSpeed(0.8, 1.25), RandomTimeShift()]
    x = signals()
    assert aug(x, gen()).shape == x.shape


def test_a_signal_preset_refuses_an_unknown_argument() -> None:
    with pytest.raises(ConfigError, match=r"'speed'.*\['factor'\].*low, high"):
        build_augment([{"name": "speed", "factor": 2}], "signals")


@pytest.mark.parametrize(
    "spec", ["timeshift", "noise,amplitude", "flip", ["speed"], {"name": "timeshift"}]
)
def test_token_ids_refuse_any_augmentation(spec: object) -> None:
    with pytest.raises(ConfigError, match=r"token ids.*expected none"):
        build_augment(spec, "tokens")


@pytest.mark.parametrize("spec", [None, "none", [], "auto"])
def test_token_ids_accept_no_augmentation(spec: object) -> None:
    assert build_augment(spec, "tokens") is None


# --- RandomSpeed -------------------------------------------------------------------------------


def speed_oracle(x: torch.Tensor, factors: np.ndarray) -> np.ndarray:
    """out[b, c, t] = x[b, c] linearly interpolated at t * factor[b]; 0 past the last sample."""
    x64 = x.double().numpy()
    length = x64.shape[-1]
    grid = np.arange(length)
    out = np.zeros_like(x64)
    for b, factor in enumerate(factors):
        for c in range(x64.shape[1]):
            out[b, c] = np.interp(grid * factor, grid, x64[b, c], right=0.0)
    return out


def apply_speed(x: torch.Tensor, factor: float) -> torch.Tensor:
    factors = torch.full((x.shape[0],), factor, dtype=torch.float64)
    return RandomSpeed(factor, factor).apply(x, factors)


@pytest.mark.parametrize("length", [64, 65])
def test_speed_one_is_the_identity(length: int) -> None:
    x = signals(length=length)
    torch.testing.assert_close(apply_speed(x, 1.0), x, rtol=0, atol=0)


def test_speed_two_takes_every_other_sample_then_silence() -> None:
    x = signals(length=64)
    expected = torch.zeros_like(x)
    expected[..., :32] = x[..., ::2]
    torch.testing.assert_close(apply_speed(x, 2.0), expected, rtol=0, atol=0)


def test_speed_two_of_an_odd_length_keeps_the_last_sample() -> None:
    x = signals(length=65)
    expected = torch.zeros_like(x)
    expected[..., :33] = x[..., ::2]
    torch.testing.assert_close(apply_speed(x, 2.0), expected, rtol=0, atol=0)


def test_speed_half_interpolates_midpoints() -> None:
    x = signals(length=64)
    out = apply_speed(x, 0.5)
    torch.testing.assert_close(out[..., ::2], x[..., :32], rtol=0, atol=1e-6)
    midpoints = (x[..., :31] + x[..., 1:32]) / 2
    torch.testing.assert_close(out[..., 1:-1:2], midpoints, rtol=0, atol=1e-6)
    expected = torch.from_numpy(speed_oracle(x, np.full(len(x), 0.5))).float()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drawn_speeds_match_numpy_interp_and_share_one_factor_across_channels(
    dtype: torch.dtype,
) -> None:
    op = RandomSpeed(0.7, 1.3)
    x = signals(b=8, c=3, length=101).to(dtype)
    out = op(x, gen(5))
    factors = op.sample(x, gen(5)).numpy()
    assert ((factors >= 0.7) & (factors <= 1.3)).all() and len(np.unique(factors)) == 8
    assert out.shape == x.shape and out.dtype == dtype
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(out.double().numpy(), speed_oracle(x, factors), atol=atol)


def test_speed_is_deterministic_per_generator_seed() -> None:
    op = RandomSpeed(0.8, 1.2)
    x = signals()
    assert torch.equal(op(x, gen(3)), op(x, gen(3)))
    assert not torch.equal(op(x, gen(3)), op(x, gen(4)))


@pytest.mark.parametrize(
    ("low", "high", "match"),
    [(0.0, 1.0, "speed factors > 0, received low=0.0"), (1.2, 0.8, r"received \(low, high\)")],
)
def test_speed_refuses_bad_factors(low: float, high: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RandomSpeed(low, high)
