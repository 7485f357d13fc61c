"""Audio front end in plain torch: spectrogram, mel filterbank, log-mel, MFCC, SpecAugment.

Waveforms come in as ``(B, L)`` or ``(B, 1, L)``; features go out as images ``(B, 1, F, T)``
for the 2-d CNNs. Constants derived from the configuration (window, filterbank, DCT) are
non-persistent buffers: they follow ``.to()`` but stay out of checkpoints.
SpecAugment: Park et al., 2019, "SpecAugment: A Simple Data Augmentation Method for ASR".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError

MelScale = Literal["htk", "slaney"]
WINDOWS: dict[str, Callable[..., torch.Tensor]] = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "rectangular": torch.ones,
}
# Slaney's (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above.
_SLANEY_HZ_PER_MEL = 200.0 / 3
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOG_STEP = math.log(6.4) / 27  # ln(6.4) / 27 per mel above the break


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"Expected {name} > 0, received {name}={value}")


def waveform_batch(x: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` or ``(B, 1, L)`` -> ``(B, L)``."""
    if x.dim() == 3 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() != 2:
        raise ShapeMismatchError(
            f"Expected a waveform batch of shape (B, L) or (B, 1, L), received {tuple(x.shape)}"
        )
    return x


def preemphasis(x: torch.Tensor, coeff: float = 0.97) -> torch.Tensor:
    """``y[0] = x[0]``, ``y[n] = x[n] - coeff * x[n-1]`` along the last axis (a first-order
    high-pass that lifts the high formants before framing, as in HTK)."""
    return torch.cat([x[..., :1], x[..., 1:] - coeff * x[..., :-1]], dim=-1)


class Spectrogram(nn.Module):
    """Short-time Fourier transform magnitudes, ``|STFT|**power``, via ``torch.stft``.

    Args:
        n_fft: FFT size; the output has ``n_fft // 2 + 1`` frequency bins.
        hop_length: samples between frames; default ``win_length // 2``.
        win_length: window size (``<= n_fft``, centred in the frame); default ``n_fft``.
        window: ``"hann"``, ``"hamming"``, ``"blackman"`` (periodic) or ``"rectangular"``.
        power: 2 for power, 1 for magnitude; None returns the complex STFT.
        center: pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred on
            sample ``t * hop_length``; otherwise frames start there.
        pad_mode: padding used when ``center``, as in ``torch.nn.functional.pad``.
    """

    window: torch.Tensor

    def __init__(
        self,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        window: str = "hann",
        power: float | None = 2.0,
        center: bool = True,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        win_length = n_fft if win_length is None else win_length
        hop_length = max(win_length // 2, 1) if hop_length is None else hop_length
        for name, value in (("n_fft", n_fft), ("hop_length", hop_length), ("power", power)):
            _positive(name, value)
        if not 0 < win_length <= n_fft:
            raise ConfigError(
                f"Expected 0 < win_length <= n_fft={n_fft}, received win_length={win_length}"
            )
        if window not in WINDOWS:
            raise ConfigError(f"Expected window in {sorted(WINDOWS)}, received {window!r}")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.power, self.center, self.pad_mode = power, center, pad_mode
        self.window_name = window
        window_values = WINDOWS[window](win_length, dtype=torch.float64, device="cpu").float()
        self.register_buffer("window", window_values, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = waveform_batch(x)  # (B, L)
        shortest = self.n_fft // 2 + 1 if self.center else self.n_fft
        if x.shape[-1] < shortest:
            raise ShapeMismatchError(
                f"Expected at least {shortest} samples for n_fft={self.n_fft} with "
                f"center={self.center}, received {x.shape[-1]}"
            )
        spec = torch.stft(
            x,
            self.n_fft,
            self.hop_length,
            self.win_length,
            self.window.to(x.dtype),
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )  # (B, n_fft // 2 + 1, frames)
        if self.power == 2:
            spec = spec.real.square() + spec.imag.square()  # exact, and no abs() at 0
        elif self.power is not None:
            spec = spec.abs().pow(self.power)
        return spec.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
            f"window={self.window_name!r}, power={self.power}, center={self.center}"
        )


def hz_to_mel(hz: torch.Tensor, scale: MelScale = "htk") -> torch.Tensor:
    """Mel values of frequencies in Hz: HTK ``2595 log10(1 + f / 700)`` or Slaney's."""
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    linear = hz / _SLANEY_HZ_PER_MEL
    above = (
        _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
        + torch.log(hz.clamp(min=_SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    )
    return torch.where(hz < _SLANEY_BREAK_HZ, linear, above)


def mel_to_hz(mel: torch.Tensor, scale: MelScale = "htk") -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
    above = _SLANEY_BREAK_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - break_mel))
    return torch.where(mel < break_mel, mel * _SLANEY_HZ_PER_MEL, above)


def mel_filterbank(
    n_mels: int,
    n_fft: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: MelScale = "htk",
    norm: Literal["slaney"] | None = None,
) -> torch.Tensor:
    """Triangular filters evenly spaced on the mel scale, sampled at the FFT bin frequencies.

    Filter ``i`` rises from band edge ``i`` to ``i + 1`` and falls to ``i + 2`` of
    ``n_mels + 2`` edges spaced evenly in mels from ``f_min`` to ``f_max`` (default
    ``sample_rate / 2``). ``norm="slaney"`` scales each filter by ``2 / bandwidth in Hz``
    (equal area) instead of a peak of 1.

    Returns:
        float32 tensor of shape ``(n_mels, n_fft // 2 + 1)``.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    for name, value in (("n_mels", n_mels), ("n_fft", n_fft), ("sample_rate", sample_rate)):
        _positive(name, value)
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ConfigError(
            f"Expected 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}, received "
            f"f_min={f_min}, f_max={f_max}"
        )
    if scale not in ("htk", "slaney") or norm not in (None, "slaney"):
        raise ConfigError(
            f"Expected scale 'htk' or 'slaney' and norm None or 'slaney', received "
            f"scale={scale!r}, norm={norm!r}"
        )
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64, device="cpu")
    limits = torch.tensor([f_min, f_max], dtype=torch.float64, device="cpu")
    low, high = hz_to_mel(limits, scale).tolist()
    edges = mel_to_hz(
        torch.linspace(low, high, n_mels + 2, dtype=torch.float64, device="cpu"), scale
    )
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    fb = torch.minimum(rising, falling).clamp(min=0)  # (n_mels, n_fft // 2 + 1)
    if norm == "slaney":
        fb = fb * (2.0 / (right - left))
    empty = int((fb.amax(dim=1) == 0).sum())
    if empty:
        warnings.warn(
            f"{empty} of n_mels={n_mels} mel filters fall between FFT bins and are all zero; "
            f"use fewer mels or a larger n_fft than {n_fft}",
            stacklevel=2,
        )
    return fb.float()


class MelSpectrogram(nn.Module):
    """Power spectrogram projected onto a mel filterbank -> ``(B, 1, n_mels, frames)``.

    Args:
        sample_rate: of the input, in Hz.
        n_fft, hop_length, win_length, window, power, center, pad_mode: as in
            :class:`Spectrogram`.
        n_mels, f_min, f_max, scale, norm: as in :func:`mel_filterbank`.
    """

    filterbank: torch.Tensor

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 40,  # the common speech choice; 128 leaves empty filters at n_fft=256
        f_min: float = 0.0,
        f_max: float | None = None,
        window: str = "hann",
        power: float = 2.0,
        center: bool = True,
        pad_mode: str = "reflect",
        scale: MelScale = "htk",
        norm: Literal["slaney"] | None = None,
    ) -> None:
        super().__init__()
        self.spectrogram = Spectrogram(
            n_fft, hop_length, win_length, window, power, center, pad_mode
        )
        fb = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max, scale, norm)
        self.register_buffer("filterbank", fb, persistent=False)
        self.sample_rate, self.n_mels = sample_rate, n_mels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(x)  # (B, 1, n_fft // 2 + 1, T)
        return torch.matmul(self.filterbank.to(spec.dtype), spec)  # (B, 1, n_mels, T)


class LogMel(MelSpectrogram):
    """Natural log of mel energies, ``log(mel + eps)`` -> ``(B, 1, n_mels, frames)``.

    Args:
        eps: added before the log so silence gives ``log(eps)``, not ``-inf``.
        top_db: when given, each example is floored at its maximum minus ``top_db``
            decibels (``top_db * ln(10) / 10`` in natural-log units).
        The others: as in :class:`MelSpectrogram`.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: float | None = None,
        window: str = "hann",
        center: bool = True,
        eps: float = 1e-6,
        top_db: float | None = None,
        scale: MelScale = "htk",
        norm: Literal["slaney"] | None = None,
    ) -> None:
        super().__init__(
            sample_rate,
            n_fft,
            hop_length,
            win_length,
            n_mels,
            f_min,
            f_max,
            window,
            center=center,
            scale=scale,
            norm=norm,
        )
        _positive("eps", eps)
        _positive("top_db", top_db)
        self.eps, self.top_db = eps, top_db

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_mel = torch.log(super().forward(x) + self.eps)  # (B, 1, n_mels, T)
        if self.top_db is None:
            return log_mel
        floor = log_mel.amax(dim=(1, 2, 3), keepdim=True) - self.top_db * math.log(10) / 10
        return torch.maximum(log_mel, floor)


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """The first ``n_out`` rows of the orthonormal DCT-II of length ``n_in``, ``(n_out, n_in)``:
    ``D[k, n] = s_k cos(pi k (2n + 1) / (2 n_in))``, ``s_0 = sqrt(1/n_in)``, else ``sqrt(2/n_in)``.
    """
    if not 0 < n_out <= n_in:
        raise ConfigError(f"Expected 0 < n_mfcc <= n_mels={n_in}, received n_mfcc={n_out}")
    k = torch.arange(n_out, dtype=torch.float64, device="cpu")[:, None]
    n = torch.arange(n_in, dtype=torch.float64, device="cpu")[None, :]
    d = torch.cos(math.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2 / n_in)
    d[0] /= math.sqrt(2)
    return d.float()


def lifter_weights(n_mfcc: int, lifter: float) -> torch.Tensor:
    """HTK's sinusoidal lifter ``1 + (L / 2) sin(pi k / L)`` for coefficients ``k = 0..n-1``;
    all ones when ``lifter == 0``."""
    k = torch.arange(n_mfcc, dtype=torch.float64, device="cpu")
    if lifter == 0:
        return torch.ones(n_mfcc, device="cpu")
    return (1 + lifter / 2 * torch.sin(math.pi * k / lifter)).float()


class MFCC(nn.Module):
    """Mel-frequency cepstral coefficients: orthonormal DCT-II of :class:`LogMel` over the
    mel axis, optionally liftered -> ``(B, 1, n_mfcc, frames)``.

    Args:
        sample_rate: of the input, in Hz.
        n_mfcc: coefficients kept (the first ``n_mfcc`` of ``n_mels``).
        lifter: HTK lifter length ``L`` (22 in HTK and python_speech_features); 0 for none.
        The others: as in :class:`LogMel`.
    """

    dct: torch.Tensor
    lifter: torch.Tensor

    def __init__(
        self,
        sample_rate: int,
        n_mfcc: int = 13,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: float | None = None,
        window: str = "hann",
        center: bool = True,
        lifter: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if lifter < 0:
            raise ConfigError(f"Expected lifter >= 0, received lifter={lifter}")
        self.log_mel = LogMel(
            sample_rate,
            n_fft,
            hop_length,
            win_length,
            n_mels,
            f_min,
            f_max,
            window,
            center=center,
            eps=eps,
        )
        self.register_buffer("dct", dct_matrix(n_mfcc, n_mels), persistent=False)
        self.register_buffer("lifter", lifter_weights(n_mfcc, lifter)[:, None], persistent=False)
        self.n_mfcc = n_mfcc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_mel = self.log_mel(x)  # (B, 1, n_mels, T)
        cepstra = torch.matmul(self.dct.to(log_mel.dtype), log_mel)  # (B, 1, n_mfcc, T)
        return cepstra * self.lifter.to(log_mel.dtype)


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., 2019) of ``(B, C, F, T)`` features.

    In training mode each example gets its own masks (shared by its channels): each mask's
    width is drawn uniformly from ``0..width`` and its start uniformly from the positions
    where it fits. In eval mode the input is returned unchanged.

    Args:
        freq_masks, time_masks: masks per example along F and along T.
        freq_width, time_width: largest mask width, in bins and frames.
        fill: ``"zero"``, or ``"mean"`` for the example's mean per channel.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 10,
        fill: Literal["zero", "mean"] = "zero",
    ) -> None:
        super().__init__()
        counts = {"freq_masks": freq_masks, "freq_width": freq_width}
        counts |= {"time_masks": time_masks, "time_width": time_width}
        for name, value in counts.items():
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"Expected {name} >= 0 (an int), received {name}={value!r}")
        if fill not in ("zero", "mean"):
            raise ConfigError(f"Expected fill 'zero' or 'mean', received fill={fill!r}")
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.fill = fill

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        if x.dim() != 4:
            raise ShapeMismatchError(f"Expected features (B, C, F, T), received {tuple(x.shape)}")
        B, _, n_freq, n_time = x.shape
        freq = band_mask(B, n_freq, self.freq_masks, self.freq_width, generator)  # (B, F)
        time = band_mask(B, n_time, self.time_masks, self.time_width, generator)  # (B, T)
        masked = (freq[:, :, None] | time[:, None, :]).to(x.device)[:, None]  # (B, 1, F, T)
        value = x.mean(dim=(2, 3), keepdim=True) if self.fill == "mean" else x.new_zeros(())
        return torch.where(masked, value, x)

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width={self.time_width}, fill={self.fill!r}"
        )


def band_mask(
    batch: int, size: int, n_masks: int, width: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Bool ``(batch, size)``: the union of ``n_masks`` bands per row, each of a width drawn
    from ``0..min(width, size)`` at a start drawn from ``0..size - that width``."""
    device = generator.device if generator is not None else torch.device("cpu")
    widths = torch.randint(
        0, min(width, size) + 1, (batch, n_masks, 1), generator=generator, device=device
    )
    u = torch.rand((batch, n_masks, 1), generator=generator, device=device)
    starts = (u * (size - widths + 1)).long()  # uniform over the positions where it fits
    pos = torch.arange(size, device=device)
    return ((pos >= starts) & (pos < starts + widths)).any(dim=1)
