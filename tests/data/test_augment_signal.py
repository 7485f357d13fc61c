"""1-D augmentation: each op against its definition (roll, gain, SNR, window), determinism."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.data.augment import AugmentOp
from cnnlab.data.augment_signal import (
    AddNoise,
    RandomAmplitude,
    RandomCrop1d,
    RandomTimeShift,
    SignalAugment,
)


def signals(b: int = 16, c: int = 2, length: int = 500, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, length, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


OPS = [RandomTimeShift(50), RandomAmplitude(), AddNoise((0.0, 20.0)), RandomCrop1d(300)]


@pytest.mark.parametrize("op", OPS, ids=lambda op: type(op).__name__)
def test_same_seed_same_output_and_shapes(op: AugmentOp) -> None:
    x = signals()
    a, b = op(x, gen(3)), op(x, gen(3))
    assert torch.equal(a, b) and not torch.equal(a, op(x, gen(4)))
    expected = (16, 2, 300) if isinstance(op, RandomCrop1d) else x.shape
    assert a.shape == expected and a.dtype == x.dtype


@pytest.mark.parametrize("op", OPS, ids=lambda op: type(op).__name__)
def test_refuses_images_and_integer_batches(op: AugmentOp) -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(B, C, L\).*\(2, 1, 8, 8\)"):
        op(torch.zeros(2, 1, 8, 8), gen())
    with pytest.raises(ConfigError, match=r"torch\.int64"):
        op(torch.zeros(2, 1, 400, dtype=torch.int64), gen())


def test_time_shift_is_a_per_sample_roll_of_the_input() -> None:
    op, x = RandomTimeShift(max_shift=50), signals()
    shifts = op.sample(x, gen(1))
    assert shifts.abs().max() <= 50 and (shifts > 0).any() and (shifts < 0).any()
    out = op.apply(x, shifts)
    for b in range(len(x)):  # the same shift for every channel of a sample
        assert torch.equal(out[b], torch.roll(x[b], int(shifts[b]), dims=-1))
    assert torch.equal(op(x, gen(1)), out)
    assert torch.equal(RandomTimeShift(0)(x, gen()), x)


def test_time_shift_covers_its_range_uniformly() -> None:
    shifts = RandomTimeShift(2).sample(torch.zeros(5000, 1, 8), gen())
    counts = torch.bincount(shifts + 2, minlength=5)
    assert counts.shape == (5,) and counts.min() > 900 and counts.max() < 1100  # 1000 each


def test_amplitude_ratio_is_one_gain_per_sample_in_range() -> None:
    x = signals()
    out = RandomAmplitude(low=0.5, high=2.0)(x, gen(2))
    ratio = out / x  # (B, C, L); x has no zeros
    gains = ratio[:, 0, 0]
    torch.testing.assert_close(ratio, gains[:, None, None].expand_as(ratio))
    assert gains.min() >= 0.5 and gains.max() <= 2.0 and gains.std() > 0.2
    with pytest.raises(ConfigError, match=r"\(1\.2, 0\.8\)"):
        RandomAmplitude(low=1.2, high=0.8)


def test_noise_has_the_drawn_snr_relative_to_each_samples_power() -> None:
    # Samples of very different loudness get the same SNR range.
    x = signals(b=32, c=2, length=4000) * torch.logspace(-2, 2, 32)[:, None, None]
    op = AddNoise(snr_db=(5.0, 15.0))
    snr, noise = op.sample(x, gen(5))
    out = op.apply(x, snr, noise)
    power = x.double().square().mean(dim=(1, 2))
    measured = 10 * torch.log10(power / (out - x).double().square().mean(dim=(1, 2)))
    assert snr.min() >= 5.0 and snr.max() <= 15.0 and snr.std() > 2
    torch.testing.assert_close(measured, snr, atol=0.5, rtol=0)  # 8000 noise values each
    assert torch.equal(op(x, gen(5)), out)


def test_crop_is_a_window_of_the_input() -> None:
    x = torch.arange(2 * 3 * 100, dtype=torch.float32).reshape(2, 3, 100)
    op = RandomCrop1d(length=40)
    starts = op.sample(x, gen(7))
    out = op.apply(x, starts)
    for b in range(2):
        s = int(starts[b])
        assert 0 <= s <= 60 and torch.equal(out[b], x[b, :, s : s + 40])
    assert torch.equal(RandomCrop1d(100)(x, gen()), x)
    with pytest.raises(ShapeMismatchError, match=r"length=101.*\(2, 3, 100\)"):
        RandomCrop1d(101)(x, gen())


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RandomTimeShift(-1), "max_shift=-1"),
        (lambda: RandomTimeShift(2.5), "max_shift=2.5"),  # type: ignore[arg-type]
        (lambda: RandomCrop1d(0), "length=0"),
        (lambda: AddNoise(snr_db=(10.0, 0.0)), r"snr_db=\(10\.0, 0\.0\)"),
    ],
)
def test_bad_arguments_echo_the_value(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_pipeline_applies_ops_in_order_from_one_generator() -> None:
    x = signals(length=600)
    pipeline = SignalAugment([RandomCrop1d(512), RandomTimeShift(64), RandomAmplitude()])
    g = gen(9)
    expected = RandomAmplitude()(RandomTimeShift(64)(RandomCrop1d(512)(x, g), g), g)
    assert torch.equal(pipeline(x, gen(9)), expected)
    assert "RandomTimeShift(max_shift=64)" in repr(pipeline)
    assert torch.equal(SignalAugment([])(x, gen()), x)
