"""Batched augmentation of 1-D signals (B, C, L): time shift, amplitude scaling, noise, crop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.data.augment import AugmentOp, _pair, _rand

# As in cnnlab.data.augment: each op draws the whole batch's random numbers in one call on
# the caller's generator (same generator state, same output), `sample` draws the parameters
# and `apply` uses them, so tests can recompute an output from its parameters. All channels
# of a sample get the same draw: they are sensors recording the same moment.


def _check_signals(x: Tensor, op: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3:
        received = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeMismatchError(f"{op} expects a batch shaped (B, C, L), received {received}")
    if not x.is_floating_point():
        raise ConfigError(f"{op} expects floating-point signals, received dtype={x.dtype}")


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"Expected {name} as an int >= {low}, received {name}={value!r}")
    return value


@dataclass
class RandomTimeShift:
    """Roll each signal circularly by a whole number of samples in [-max_shift, max_shift].

    A circular roll keeps every sample (no padding enters); the seam it makes is one
    more discontinuity in a window that was cut from a longer recording anyway.

    Args:
        max_shift: Largest shift in samples, either way.
    """

    max_shift: int = 256

    def __post_init__(self) -> None:
        self.max_shift = _count("max_shift", self.max_shift, 0)

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """(B,) int64 shifts; positive moves the content later in time."""
        span = 2 * self.max_shift + 1
        u = _rand(generator, (x.shape[0],), x.device)
        return (u * span).long().clamp_(max=span - 1) - self.max_shift

    def apply(self, x: Tensor, shifts: Tensor) -> Tensor:
        """out[b, :, t] = x[b, :, (t - shifts[b]) mod L], as `torch.roll` per sample."""
        length = x.shape[2]
        source = (torch.arange(length, device=x.device) - shifts[:, None]) % length  # (B, L)
        return x.gather(2, source[:, None, :].expand_as(x))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_signals(x, "RandomTimeShift")
        return self.apply(x, self.sample(x, generator))


@dataclass
class RandomAmplitude:
    """Multiply each signal by a gain drawn uniformly from [low, high] (sensor sensitivity,
    load level).

    Args:
        low: Smallest gain.
        high: Largest gain.
    """

    low: float = 0.8
    high: float = 1.2

    def __post_init__(self) -> None:
        self.low, self.high = _pair("(low, high)", (self.low, self.high), 0.0, float("inf"))

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """(B,) gains."""
        u = _rand(generator, (x.shape[0],), x.device)
        return (self.low + (self.high - self.low) * u).to(x.dtype)

    def apply(self, x: Tensor, gains: Tensor) -> Tensor:
        return x * gains[:, None, None]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_signals(x, "RandomAmplitude")
        return self.apply(x, self.sample(x, generator))


@dataclass
class AddNoise:
    """Add white Gaussian noise at an SNR drawn per sample, uniformly in dB.

    The noise power is the sample's own mean power over all channels divided by
    10^(snr / 10), so quiet and loud recordings are degraded alike (WDCNN's anti-noise test
    adds noise the same way).

    Args:
        snr_db: (low, high) range of the signal-to-noise ratio in dB.
        p: the share of the samples that get noise; the rest pass unchanged, so a model
            still sees clean signals as they come at test time.
    """

    snr_db: tuple[float, float] = (0.0, 20.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        self.snr_db = _pair("snr_db", self.snr_db, -200.0, 200.0)
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"Expected p in [0, 1], received p={self.p}")

    def sample(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(B,) SNRs in dB and (B, C, L) standard normal noise."""
        low, high = self.snr_db
        snr = low + (high - low) * _rand(generator, (x.shape[0],), x.device)
        if not isinstance(generator, torch.Generator):
            raise ConfigError(f"Expected a torch.Generator, received {type(generator).__name__}")
        noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        return snr, noise.to(x.device)

    def apply(self, x: Tensor, snr: Tensor, noise: Tensor) -> Tensor:
        """x + noise * sqrt(mean(x^2) / 10^(snr / 10)), per sample."""
        power = x.double().square().mean(dim=(1, 2))  # (B,)
        scale = (power / 10 ** (snr / 10)).sqrt().to(x.dtype)
        return x + noise * scale[:, None, None]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_signals(x, "AddNoise")
        noisy = self.apply(x, *self.sample(x, generator))
        if self.p >= 1.0:
            return noisy
        chosen = _rand(generator, (x.shape[0],), x.device) < self.p
        return torch.where(chosen[:, None, None], noisy, x)


@dataclass
class RandomCrop1d:
    """Cut a random window of ``length`` samples out of each signal: (B, C, L) -> (B, C, length).

    Trains on random windows of longer recordings; evaluate on fixed windows of ``length``.

    Args:
        length: Samples kept; at most L.
    """

    length: int = 2048

    def __post_init__(self) -> None:
        self.length = _count("length", self.length, 1)

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """(B,) int64 start of each window, uniform over the L - length + 1 choices."""
        choices = x.shape[2] - self.length + 1
        if choices < 1:
            raise ShapeMismatchError(
                f"RandomCrop1d(length={self.length}) needs signals at least that long, "
                f"received {tuple(x.shape)}"
            )
        u = _rand(generator, (x.shape[0],), x.device)
        return (u * choices).long().clamp_(max=choices - 1)

    def apply(self, x: Tensor, starts: Tensor) -> Tensor:
        index = starts[:, None] + torch.arange(self.length, device=x.device)  # (B, length)
        return x.gather(2, index[:, None, :].expand(-1, x.shape[1], -1))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_signals(x, "RandomCrop1d")
        return self.apply(x, self.sample(x, generator))


class SignalAugment:
    """A pipeline of signal ops applied in order, all drawing from one generator.

    Takes the place of :class:`cnnlab.data.augment.Augment` (which checks for images) as
    a loader's ``augment``.

    Args:
        ops: The ops, e.g. ``[RandomTimeShift(256), AddNoise((0, 20))]``.
    """

    def __init__(self, ops: Sequence[AugmentOp]) -> None:
        self.ops = list(ops)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_signals(x, "SignalAugment")
        for op in self.ops:
            x = op(x, generator)
        return x

    def __repr__(self) -> str:
        lines = "".join(f"\n  {op!r}," for op in self.ops)
        return f"SignalAugment([{lines}\n])" if self.ops else "SignalAugment([])"


@dataclass
class RandomSpeed:
    """Play each signal faster or slower by a factor drawn uniformly from [low, high]:
    time and pitch scale together, like a tape at another speed (the "speed perturbation"
    of speech recognition: a voice a little higher or lower, a word said faster or slower).
    Linear interpolation; the length stays L (cut, or padded with zeros at the end).

    Args:
        low: Smallest speed factor (< 1 slows down and lowers the pitch).
        high: Largest speed factor.
    """

    low: float = 0.9
    high: float = 1.1

    def __post_init__(self) -> None:
        self.low, self.high = _pair("(low, high)", (self.low, self.high), 0.0, float("inf"))
        if self.low <= 0:
            raise ConfigError(f"Expected speed factors > 0, received low={self.low}")

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """(B,) speed factors."""
        u = _rand(generator, (x.shape[0],), x.device)
        return (self.low + (self.high - self.low) * u).to(torch.float64)

    def apply(self, x: Tensor, factors: Tensor) -> Tensor:
        """out[b, :, t] = x[b, :, t * factors[b]] (linear interpolation; 0 past the end)."""
        B, C, L = x.shape
        position = torch.arange(L, device=x.device, dtype=torch.float64)[None] * factors[:, None]
        left = position.floor().long()  # (B, L)
        frac = (position - left).to(x.dtype)[:, None, :]
        inside = (position <= L - 1)[:, None, :]
        left = left.clamp(max=L - 1)
        right = (left + 1).clamp(max=L - 1)
        gather = lambda index: x.gather(2, index[:, None, :].expand(B, C, L))  # noqa: E731
        out = gather(left) * (1 - frac) + gather(right) * frac
        return torch.where(inside, out, torch.zeros((), dtype=x.dtype, device=x.device))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_signals(x, "RandomSpeed")
        return self.apply(x, self.sample(x, generator))


# name -> (op, arguments a bare name gets), for build_augment(..., inputs="signals").
SIGNAL_PRESETS: dict[str, tuple[type, dict[str, Any]]] = {
    "timeshift": (RandomTimeShift, {}),
    "amplitude": (RandomAmplitude, {}),
    "noise": (AddNoise, {}),
    "speed": (RandomSpeed, {}),
}
