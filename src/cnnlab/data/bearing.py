"""Rolling-bearing vibration: fault frequencies, a physics-based signal generator, CWRU files,
leak-free time splits and the envelope spectrum (the classical diagnosis feature)."""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from cnnlab.core.errors import (
    ConfigError,
    DataFormatError,
    DatasetUnavailableError,
    ShapeMismatchError,
)
from cnnlab.data.real_sources import CWRU_FILES

PathLike = str | os.PathLike[str]
T = TypeVar("T")


@dataclass(frozen=True)
class BearingGeometry:
    """Rolling-element bearing dimensions; only the ratio of the two diameters matters."""

    n_balls: int
    ball_diameter: float  # d
    pitch_diameter: float  # D, the diameter of the circle through the ball centres
    contact_angle_deg: float = 0.0


# CWRU's drive-end bearing, SKF 6205-2RS JEM deep-groove ball bearing (inches).
CWRU_DRIVE_END = BearingGeometry(n_balls=9, ball_diameter=0.3126, pitch_diameter=1.537)


def fault_frequencies(
    shaft_hz: float, geometry: BearingGeometry = CWRU_DRIVE_END
) -> dict[str, float]:
    """Kinematic fault frequencies (Hz) for an inner race turning at ``shaft_hz``, outer fixed.

    With r = (d / D) cos(contact angle) and n balls:
    FTF = f/2 (1 - r) (cage), BPFO = n f/2 (1 - r), BPFI = n f/2 (1 + r),
    BSF = D / (2d) f (1 - r^2) (ball spin), and 2BSF: a ball defect strikes both races
    once per spin. CWRU's table headed "BSF" (4.7135 x shaft speed for the 6205) is 2BSF.

    Returns:
        {"FTF", "BPFO", "BPFI", "BSF", "2BSF"} -> Hz.
    """
    if not shaft_hz > 0:
        raise ConfigError(f"Expected shaft_hz > 0, received shaft_hz={shaft_hz}")
    g = geometry
    ratio = g.ball_diameter / g.pitch_diameter
    r = ratio * math.cos(math.radians(g.contact_angle_deg))
    bsf = shaft_hz / (2 * ratio) * (1 - r**2)
    return {
        "FTF": shaft_hz / 2 * (1 - r),
        "BPFO": g.n_balls * shaft_hz / 2 * (1 - r),
        "BPFI": g.n_balls * shaft_hz / 2 * (1 + r),
        "BSF": bsf,
        "2BSF": 2 * bsf,
    }


# --- synthetic signals ---------------------------------------------------------------------

FAULTS = ("normal", "outer", "inner", "ball")
# fault -> (impulse rate, amplitude-modulation rate): an outer-race defect sits still in the
# load zone; an inner-race defect turns with the shaft, a ball defect with the cage.
_RATES = {"outer": ("BPFO", None), "inner": ("BPFI", "shaft"), "ball": ("2BSF", "FTF")}
SHAFT_AMPLITUDE = 0.2  # imbalance sine, relative to an impulse response's peak of about 1
MODULATION_DEPTH = 0.5  # impulse amplitude swings 1 +- 0.5 through the load zone
RING_DOWN_FLOOR = 1e-4  # each impulse response is cut where its decay falls below this


def bearing_signal(
    fault: str,
    *,
    seconds: float | None = None,
    length: int | None = None,
    sample_rate: float = 12000.0,
    shaft_hz: float = 1797 / 60,
    geometry: BearingGeometry = CWRU_DRIVE_END,
    resonance_hz: float = 3000.0,
    damping: float = 0.05,
    snr_db: float | None = 10.0,
    slip: float = 0.01,
    generator: np.random.Generator | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """A bearing vibration signal from the standard impulse model (after Randall & Antoni 2011).

    Sum of: a shaft-rate sine (imbalance, random phase); for a fault, a train of impulses
    at the fault frequency whose spacing jitters by ``slip`` (relative std, rolling-element
    slip), each one ringing down a structural resonance; inner-race impulses are
    amplitude-modulated at shaft rate, ball impulses at the cage rate (FTF); then white
    Gaussian noise whose power is the clean signal's power over 10^(snr_db / 10).

    Args:
        fault: "normal", "outer", "inner" or "ball".
        seconds: Duration; give this or ``length`` (samples).
        sample_rate: Samples per second (CWRU's drive end: 12 kHz).
        shaft_hz: Shaft speed (CWRU at 0 HP: 1797 rpm).
        resonance_hz: Natural frequency the impacts excite; below sample_rate / 2.
        damping: Damping ratio of the resonance (0.05 rings for about 10 ms at 3 kHz).
        snr_db: Signal-to-noise ratio in dB; None for no noise.
        slip: Relative standard deviation of the time between impacts (1-2 % is typical).
        generator, seed: Source of randomness (give at most one; neither means seed 0).
            The noise is drawn last, so ``snr_db=None`` with the same seed gives the
            clean signal of a noisy one.

    Returns:
        float32 array (L,).
    """
    n = _signal_length(seconds, length, sample_rate)
    rng = _rng(generator, seed)
    if fault not in FAULTS:
        raise ConfigError(f"Expected fault in {FAULTS}, received fault={fault!r}")
    if not 0 < resonance_hz < sample_rate / 2:
        raise ConfigError(
            f"Expected 0 < resonance_hz < sample_rate / 2 = {sample_rate / 2:g}, "
            f"received resonance_hz={resonance_hz}"
        )
    if not 0 < damping < 1 or not 0 <= slip < 0.5:
        raise ConfigError(
            f"Expected 0 < damping < 1 and 0 <= slip < 0.5, received damping={damping}, slip={slip}"
        )
    freqs = fault_frequencies(shaft_hz, geometry) | {"shaft": shaft_hz}
    t = np.arange(n) / sample_rate
    x = SHAFT_AMPLITUDE * np.sin(2 * np.pi * shaft_hz * t + rng.uniform(0, 2 * np.pi))
    if fault != "normal":
        rate, modulation = _RATES[fault]
        decay = 2 * np.pi * resonance_hz * damping  # 1/s, of the ring-down envelope
        times = _impact_times(freqs[rate], n / sample_rate, slip, rng, decay)
        amplitude = np.ones_like(times)
        if modulation is not None:
            phase = rng.uniform(0, 2 * np.pi)
            amplitude += MODULATION_DEPTH * np.cos(2 * np.pi * freqs[modulation] * times + phase)
        x += _ring_downs(times, amplitude, n, sample_rate, resonance_hz, damping)
    if snr_db is not None:
        noise_power = np.mean(x**2) / 10 ** (snr_db / 10)
        x += math.sqrt(noise_power) * rng.standard_normal(n)
    return x.astype(np.float32)


def _signal_length(seconds: float | None, length: int | None, sample_rate: float) -> int:
    if not sample_rate > 0:
        raise ConfigError(f"Expected sample_rate > 0, received sample_rate={sample_rate}")
    if (seconds is None) == (length is None):
        raise ConfigError(
            f"Expected exactly one of seconds or length, received seconds={seconds}, length={length}"
        )
    n = length if length is not None else round((seconds or 0.0) * sample_rate)
    if n < 1:
        raise ConfigError(f"Expected a signal of at least 1 sample, received {n} samples")
    return int(n)


def _rng(generator: np.random.Generator | None, seed: int | None) -> np.random.Generator:
    if generator is not None and seed is not None:
        raise ConfigError(f"Expected a generator or a seed, received both (seed={seed})")
    return (
        generator if generator is not None else np.random.default_rng(0 if seed is None else seed)
    )


def _impact_times(
    rate: float, duration: float, slip: float, rng: np.random.Generator, decay: float
) -> np.ndarray:
    """Impact times (s) covering [-ring-down, duration), so the signal starts mid-train."""
    period = 1 / rate
    lead = math.log(1 / RING_DOWN_FLOOR) / decay  # seconds a ring lasts
    count = math.ceil((duration + lead) / period * 1.5) + 2  # spare impacts for the jitter
    gaps = period * np.clip(1 + slip * rng.standard_normal(count), 0.5, 1.5)
    times = rng.uniform(-lead - period, -lead) + np.cumsum(gaps)
    return times[times < duration]


def _ring_downs(
    times: np.ndarray,
    amplitude: np.ndarray,
    n: int,
    sample_rate: float,
    resonance_hz: float,
    damping: float,
) -> np.ndarray:
    """Sum of a(k) exp(-zeta w t) sin(w_d t) started at each impact time, sampled exactly."""
    omega = 2 * np.pi * resonance_hz
    decay = damping * omega
    omega_d = omega * math.sqrt(1 - damping**2)
    ring = math.ceil(math.log(1 / RING_DOWN_FLOOR) / decay * sample_rate)  # samples
    first = np.ceil(times * sample_rate).astype(np.int64)  # first sample at or after impact
    index = first[:, None] + np.arange(ring)  # (K, ring)
    tau = index / sample_rate - times[:, None]  # seconds since each impact, >= 0
    values = amplitude[:, None] * np.exp(-decay * tau) * np.sin(omega_d * tau)
    inside = (index >= 0) & (index < n)
    return np.bincount(index[inside], weights=values[inside], minlength=n)


def synthetic_bearing_dataset(
    n_per_class: int,
    window: int = 2048,
    snr_db: float | None = 10.0,
    seed: int = 0,
    sample_rate: float = 12000.0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Independent windows of each fault class from :func:`bearing_signal`.

    Returns:
        x float32 (N, 1, window), y int64 (N,) indexing ``FAULTS``, class names; class-major.
    """
    if n_per_class < 1 or window < 1:
        raise ConfigError(
            f"Expected n_per_class >= 1 and window >= 1, received n_per_class={n_per_class}, "
            f"window={window}"
        )
    rng = np.random.default_rng(seed)
    x = np.stack(
        [
            bearing_signal(f, length=window, sample_rate=sample_rate, snr_db=snr_db, generator=rng)
            for f in FAULTS
            for _ in range(n_per_class)
        ]
    )[:, None, :]
    y = np.repeat(np.arange(len(FAULTS), dtype=np.int64), n_per_class)
    return x, y, list(FAULTS)


# --- CWRU files ----------------------------------------------------------------------------

CHANNELS = ("DE", "FE", "BA")  # drive-end, fan-end and base accelerometers
# The 10-class task at 0 HP (1797 rpm): class name -> .npz file (cnnlab.data.real_sources).
CWRU_CLASSES: dict[str, str] = CWRU_FILES


CWRU_48K_BASELINES = (97, 98, 99, 100)  # CWRU's .mat numbers of the normal baselines, 0-3 HP


def cwru_sample_rate(filename: str) -> int:
    """Sampling rate (Hz) of a CWRU recording, from its .npz name or .mat number.

    The normal baselines are 48 kHz, like the ``DE48`` files, although the 12 kHz tasks
    use them next to 12 kHz fault recordings: read at 48 kHz, 1797_Normal's spectrum
    has lines at 1x, 2x and 3x the 29.95 Hz shaft rate; read at 12 kHz they would sit
    at a quarter of those. .mat files other than 97-100 are taken as 12 kHz.
    """
    path = Path(filename)
    if "Normal" in path.name or "DE48" in path.name:
        return 48000
    return 48000 if path.stem.isdigit() and int(path.stem) in CWRU_48K_BASELINES else 12000


def to_sample_rate(signal: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """``signal`` (L,) resampled from ``rate`` to ``target_rate`` Hz, float32.

    Polyphase FIR filtering (scipy's resample_poly, Kaiser window), which removes what
    lies above the new Nyquist frequency before decimating.
    """
    if rate == target_rate:
        return np.asarray(signal, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target_rate)
    return resample_poly(signal, target_rate // g, rate // g).astype(np.float32)


def read_cwru(path: PathLike, channel: str = "DE") -> np.ndarray:
    """One accelerometer channel of a CWRU recording, float32 (L,).

    Reads the .npz copies (arrays DE, FE, BA shaped (n, 1)) and CWRU's original .mat
    files (variables like ``X097_DE_time``). A .mat holding several recordings of the
    channel (a few CWRU files do) gives the one whose number is the file's (97.mat ->
    X097), else the first by name.
    """
    path = Path(path)
    if channel not in CHANNELS:
        raise ConfigError(f"Expected channel in {CHANNELS}, received channel={channel!r}")
    if not path.is_file():
        raise DatasetUnavailableError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _load(path, lambda: _read_npz(path))
        present = [c for c in CHANNELS if c in arrays]
        x = arrays.get(channel)
    elif suffix == ".mat":
        x, present = _read_mat(path, channel)
    else:
        raise DataFormatError(
            f"{path}: expected a CWRU .npz or .mat file, received {path.suffix!r}"
        )
    if x is None:
        raise DataFormatError(f"{path}: no channel {channel!r}; channels present: {present}")
    if x.ndim > 2 or (x.ndim == 2 and x.shape[1] != 1) or x.size == 0:
        raise DataFormatError(
            f"{path}: expected {channel} shaped (n, 1) or (n,), received {x.shape}"
        )
    return np.asarray(x, dtype=np.float32).reshape(-1)


def _load(path: Path, read: Callable[[], T]) -> T:
    """``read()``, with a damaged file reported as a DataFormatError naming it."""
    try:
        return read()
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataFormatError(f"{path}: unreadable ({error})") from error


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _read_mat(path: Path, channel: str) -> tuple[np.ndarray | None, list[str]]:
    from scipy.io import loadmat  # scipy comes with scikit-learn

    variables = _load(path, lambda: loadmat(path))
    found: dict[str, tuple[int, str]] = {}  # variable -> (recording number, channel)
    for name in sorted(variables):
        match = re.fullmatch(r"X(\d+)_([A-Z]+)_time", name)
        if match:
            found[name] = (int(match[1]), match[2])
    present = sorted({c for _, c in found.values()})
    names = [n for n, (_, c) in found.items() if c == channel]
    own = [n for n in names if path.stem.isdigit() and found[n][0] == int(path.stem)]
    chosen = own or names
    return (np.asarray(variables[chosen[0]]) if chosen else None), present


class SignalSplits(NamedTuple):
    """Windows cut after a time split: float32 (N, 1, window) signals, int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]


def cwru_splits(
    root: PathLike,
    *,
    window: int = 2048,
    train_fraction: float = 0.7,
    channel: str = "DE",
    sample_rate: int = 12000,
) -> SignalSplits:
    """The :data:`CWRU_CLASSES` task from a folder of the .npz copies: each recording
    resampled to ``sample_rate`` (the 48 kHz baseline too), split by time (first
    ``train_fraction`` trains), then windowed (see :func:`time_split_windows`)."""
    train, test = [], []
    for name in CWRU_CLASSES.values():
        signal = read_cwru(Path(root) / name, channel)
        x = to_sample_rate(signal, cwru_sample_rate(name), sample_rate)
        windows = time_split_windows(x, window=window, train_fraction=train_fraction)
        train.append(windows[0])
        test.append(windows[1])

    def labels(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])

    x_train = np.concatenate(train)[:, None]  # (N, 1, window)
    x_test = np.concatenate(test)[:, None]
    return SignalSplits(x_train, labels(train), x_test, labels(test), list(CWRU_CLASSES))


def time_split_windows(
    signal: np.ndarray,
    *,
    window: int,
    train_fraction: float = 0.7,
    train_stride: int | None = None,
    test_stride: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a recording by time, then cut windows inside each part.

    Overlapping windows cut before the split would put the same samples in train and
    test and inflate accuracy; here no train window shares a sample with a test window.

    Args:
        signal: One recording (L,).
        window: Samples per window.
        train_fraction: The first ``floor(train_fraction * L)`` samples are for training.
        train_stride: Step between train windows (default window // 2: 50 % overlap).
        test_stride: Step between test windows (default window: no overlap).

    Returns:
        train (n1, window) and test (n2, window) copies.
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ShapeMismatchError(f"Expected a signal shaped (L,), received {signal.shape}")
    if not 0 < train_fraction < 1:
        raise ConfigError(
            f"Expected 0 < train_fraction < 1, received train_fraction={train_fraction}"
        )
    strides = {
        "train_stride": train_stride or max(window // 2, 1),
        "test_stride": test_stride or window,
    }
    if window < 1 or any(s < 1 for s in strides.values()):
        raise ConfigError(f"Expected window and strides >= 1, received window={window}, {strides}")
    cut = int(train_fraction * len(signal))
    parts = {"train": signal[:cut], "test": signal[cut:]}
    for part, samples in parts.items():
        if len(samples) < window:
            raise ConfigError(
                f"Expected window <= the {part} part: a recording of {len(signal)} samples "
                f"gives a {part} part of {len(samples)} samples, received window={window}"
            )
    train, test = (
        np.lib.stride_tricks.sliding_window_view(parts[p], window)[:: strides[f"{p}_stride"]].copy()
        for p in ("train", "test")
    )
    return train, test


# --- envelope spectrum -----------------------------------------------------------------------


def envelope_spectrum(
    x: np.ndarray,
    sample_rate: float,
    max_hz: float | None = None,
    band: tuple[float, float] | None = None,
) -> np.ndarray:
    """Amplitude spectrum of the Hilbert envelope, the classical bearing-fault feature.

    The analytic signal comes from the FFT (negative frequencies zeroed, positive doubled;
    ``band`` also zeroes everything outside (low, high) Hz, the usual band-pass around a
    resonance); its magnitude, mean removed and Hann-windowed, is transformed again.
    One-sided, window-corrected scaling: an envelope component A cos(2 pi f t) shows as A
    at f when f falls on a bin.

    Args:
        x: Signals (N, L).
        sample_rate: Samples per second; bin k is k * sample_rate / L Hz.
        max_hz: Keep bins up to this frequency (default: all, up to sample_rate / 2).
        band: Optional (low, high) Hz pass band applied before the envelope.

    Returns:
        float32 (N, bins); frequencies from :func:`envelope_frequencies`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ShapeMismatchError(f"Expected signals shaped (N, L) with L >= 2, received {x.shape}")
    length = x.shape[1]
    freqs = np.fft.fftfreq(length, 1 / sample_rate)
    weights = np.where(freqs > 0, 2.0, 0.0)
    weights[0] = 1.0
    if length % 2 == 0:
        weights[length // 2] = 1.0  # the Nyquist bin belongs to both halves
    if band is not None:
        low, high = band
        weights *= (np.abs(freqs) >= low) & (np.abs(freqs) <= high)
    envelope = np.abs(np.fft.ifft(np.fft.fft(x, axis=1) * weights, axis=1))
    envelope -= envelope.mean(axis=1, keepdims=True)
    # A Hann window keeps a line that falls between two bins within 1.4 dB of its height
    # (3.9 dB without): otherwise the envelope's second harmonic can outgrow the first.
    taper = np.hanning(length)
    spectrum = np.abs(np.fft.rfft(envelope * taper, axis=1)) * (2 / taper.sum())
    bins = len(envelope_frequencies(length, sample_rate, max_hz))
    return spectrum[:, :bins].astype(np.float32)


def envelope_frequencies(
    length: int, sample_rate: float, max_hz: float | None = None
) -> np.ndarray:
    """Frequencies (Hz) of the bins :func:`envelope_spectrum` returns for signals of ``length``."""
    freqs = np.fft.rfftfreq(length, 1 / sample_rate)
    return freqs if max_hz is None else freqs[freqs <= max_hz]
