"""Bearing signals: fault frequencies vs CWRU's table, the generator's physics, CWRU files,
time splits and the envelope spectrum (scipy.signal.hilbert as the oracle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat
from scipy.signal import hilbert
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError
from cnnlab.data.bearing import (
    CWRU_CLASSES,
    CWRU_DRIVE_END,
    FAULTS,
    BearingGeometry,
    bearing_signal,
    cwru_sample_rate,
    cwru_splits,
    envelope_frequencies,
    envelope_spectrum,
    fault_frequencies,
    read_cwru,
    synthetic_bearing_dataset,
    time_split_windows,
    to_sample_rate,
)

CWRU_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cwru"
needs_cwru = pytest.mark.skipif(
    not (CWRU_DIR / "1797_Normal.npz").is_file(),
    reason=f"CWRU .npz copies not found in {CWRU_DIR} (see shared/data/README.md)",
)
SHAFT_HZ = 1797 / 60
FS = 12000


def logistic_regression(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    # One BLAS thread: on 2 shared cores a thread pool per core makes this fit 100x slower.
    with threadpool_limits(1):
        return LogisticRegression(max_iter=2000).fit(x, y)


def envelope_peak(x: np.ndarray, max_hz: float = 500.0, sample_rate: float = FS) -> float:
    spectrum = envelope_spectrum(x[None], sample_rate, max_hz)[0]
    return float(envelope_frequencies(len(x), sample_rate, max_hz)[np.argmax(spectrum)])


# --- fault frequencies -----------------------------------------------------------------------


def test_fault_frequencies_match_cwru_published_multiples_of_shaft_speed() -> None:
    # CWRU's bearing page, 6205-2RS JEM SKF, "size: inches; defect frequencies: multiple of
    # running speed in Hz": BPFI 5.4152, BPFO 3.5848, FTF 0.39828, BSF 4.7135.
    f = {k: v / SHAFT_HZ for k, v in fault_frequencies(SHAFT_HZ, CWRU_DRIVE_END).items()}
    assert f["BPFI"] == pytest.approx(5.4152, abs=1e-4)
    assert f["BPFO"] == pytest.approx(3.5848, abs=1e-4)
    assert f["FTF"] == pytest.approx(0.39828, abs=5e-5)
    # CWRU's "BSF" is twice the ball spin frequency: a ball defect hits both races per spin.
    assert f["2BSF"] == pytest.approx(4.7135, abs=1e-4)
    assert f["BSF"] == pytest.approx(4.7135 / 2, abs=1e-4)


def test_fault_frequency_identities_and_contact_angle() -> None:
    f = fault_frequencies(25.0, CWRU_DRIVE_END)
    assert f["BPFO"] + f["BPFI"] == pytest.approx(9 * 25.0)  # n * shaft rate
    assert f["BPFO"] == pytest.approx(9 * f["FTF"])  # balls pass a fixed point at cage rate
    # At a 90 degree contact angle the balls sit on the axis: r = 0.
    side = fault_frequencies(25.0, BearingGeometry(8, 1.0, 4.0, contact_angle_deg=90.0))
    assert side["BPFO"] == pytest.approx(side["BPFI"]) == pytest.approx(8 * 12.5)
    with pytest.raises(ConfigError, match="shaft_hz=0"):
        fault_frequencies(0, CWRU_DRIVE_END)


# --- synthetic signals -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("fault", "key"), [("outer", "BPFO"), ("inner", "BPFI"), ("ball", "2BSF")])
def test_envelope_spectrum_peaks_at_the_fault_frequency(fault: str, key: str, seed: int) -> None:
    x = bearing_signal(fault, seconds=1.0, seed=seed)  # 1 Hz bins
    assert abs(envelope_peak(x) - fault_frequencies(SHAFT_HZ)[key]) <= 1.0


def _line(spectrum: np.ndarray, freqs: np.ndarray, hz: float) -> float:
    """Height of the line nearest ``hz`` over the median of the bins within 20 Hz."""
    near = np.abs(freqs - hz) <= 1.0
    around = np.abs(freqs - hz) <= 20.0
    return float(spectrum[near].max() / np.median(spectrum[around]))


def test_modulation_lines_inner_at_shaft_rate_ball_at_cage_rate_outer_none() -> None:
    # Band-passed around the 3 kHz resonance, as in practice: the full-band envelope
    # also picks up the 0.2-amplitude shaft sine where it overlaps the ring-downs.
    freqs = envelope_frequencies(2 * FS, FS, 200)
    lines = {}
    for fault in ("outer", "inner", "ball"):
        x = bearing_signal(fault, seconds=2.0, seed=5, snr_db=20.0)
        lines[fault] = envelope_spectrum(x[None], FS, 200, band=(1000, 5000))[0]
    ftf = fault_frequencies(SHAFT_HZ)["FTF"]
    assert _line(lines["inner"], freqs, SHAFT_HZ) > 10
    assert _line(lines["ball"], freqs, ftf) > 10
    assert _line(lines["outer"], freqs, SHAFT_HZ) < 3 and _line(lines["outer"], freqs, ftf) < 3


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_noise_power_matches_the_requested_snr(snr_db: float) -> None:
    clean = bearing_signal("inner", length=4096, snr_db=None, seed=3).astype(np.float64)
    noisy = bearing_signal("inner", length=4096, snr_db=snr_db, seed=3).astype(np.float64)
    measured = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_normal_is_the_shaft_sine_at_its_amplitude() -> None:
    x = bearing_signal("normal", seconds=1.0, snr_db=None, seed=0).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x)) * 2 / len(x)
    assert np.argmax(spectrum) == round(SHAFT_HZ)  # 1 Hz bins
    assert np.sqrt(2 * np.mean(x**2)) == pytest.approx(0.2, rel=0.01)  # SHAFT_AMPLITUDE


def test_signals_are_deterministic_per_seed() -> None:
    a = bearing_signal("ball", length=3000, seed=7)
    assert a.dtype == np.float32 and a.shape == (3000,)
    assert np.array_equal(a, bearing_signal("ball", length=3000, seed=7))
    assert np.array_equal(
        a, bearing_signal("ball", length=3000, generator=np.random.default_rng(7))
    )
    assert not np.array_equal(a, bearing_signal("ball", length=3000, seed=8))
    assert bearing_signal("outer", seconds=0.5).shape == (6000,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fault": "cage"}, "fault='cage'"),
        ({"seconds": 1.0, "length": 10}, "exactly one of seconds or length"),
        ({"resonance_hz": 7000.0}, "resonance_hz=7000"),
        ({"damping": 1.5}, "damping=1.5"),
        ({"seed": 1, "generator": np.random.default_rng(1)}, "received both"),
    ],
)
def test_bad_generator_arguments_name_the_value(kwargs: dict, message: str) -> None:
    args = {"fault": "outer", "length": 100} | kwargs
    with pytest.raises(ConfigError, match=message):
        bearing_signal(**args)


def test_synthetic_dataset_layout_and_determinism() -> None:
    x, y, names = synthetic_bearing_dataset(3, window=512, snr_db=10.0, seed=4)
    assert x.shape == (12, 1, 512) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert names == list(FAULTS)
    assert np.array_equal(x, synthetic_bearing_dataset(3, window=512, snr_db=10.0, seed=4)[0])
    assert not np.array_equal(x[0], x[1])  # independent windows, not copies


def test_envelope_features_separate_the_synthetic_classes() -> None:
    # The classical baseline: envelope spectrum + logistic regression, here at 0 dB SNR.
    x, y, _ = synthetic_bearing_dataset(40, window=2048, snr_db=0.0, seed=0)
    xt, yt, _ = synthetic_bearing_dataset(20, window=2048, snr_db=0.0, seed=1)
    clf = logistic_regression(envelope_spectrum(x[:, 0], FS, 500) * 100, y)
    assert clf.score(envelope_spectrum(xt[:, 0], FS, 500) * 100, yt) > 0.9


# --- envelope spectrum ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1000, 1001])
def test_envelope_spectrum_equals_scipy_hilbert(length: int) -> None:
    x = np.random.default_rng(0).standard_normal((3, length))
    envelope = np.abs(hilbert(x, axis=1))
    envelope -= envelope.mean(axis=1, keepdims=True)
    taper = np.hanning(length)
    expected = np.abs(np.fft.rfft(envelope * taper, axis=1)) * 2 / taper.sum()
    got = envelope_spectrum(x, 1000.0)
    assert got.shape == (3, length // 2 + 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_envelope_spectrum_of_an_am_tone_shows_the_modulation_depth() -> None:
    # (1 + m cos(2 pi fm t)) cos(2 pi fc t): envelope 1 + m cos(2 pi fm t), a line of height m.
    t = np.arange(4000) / 4000.0
    carrier = np.cos(2 * np.pi * 1000 * t)
    x = (1 + 0.3 * np.cos(2 * np.pi * 50 * t)) * carrier
    hum = 2.0 * np.cos(2 * np.pi * 7 * t)  # far outside the band around the carrier
    spectrum = envelope_spectrum(np.stack([x, x + hum]), 4000.0, max_hz=100, band=(800, 1200))
    assert spectrum.shape == (2, 101)
    assert spectrum[0, 50] == pytest.approx(0.3, rel=1e-3)
    assert np.delete(spectrum[0], [49, 50, 51]).max() < 1e-3  # Hann: only neighbours leak
    np.testing.assert_allclose(spectrum[1], spectrum[0], atol=1e-3)


def test_envelope_spectrum_refuses_other_shapes() -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(N, L\).*\(2, 1, 64\)"):
        envelope_spectrum(np.zeros((2, 1, 64)), 1000.0)


# --- time split ------------------------------------------------------------------------------


def test_time_split_windows_share_no_sample_between_train_and_test() -> None:
    signal = np.arange(10_000)
    train, test = time_split_windows(signal, window=1000, train_fraction=0.7)
    assert train.shape == ((7000 - 1000) // 500 + 1, 1000)  # 50 % overlap inside train
    assert test.shape == (3000 // 1000, 1000)  # no overlap inside test
    assert set(train.ravel()).isdisjoint(test.ravel())
    assert train.max() < 7000 <= test.min()
    assert np.array_equal(train[1], np.arange(500, 1500))  # windows are the signal's samples


def test_time_split_strides() -> None:
    train, test = time_split_windows(np.arange(100), window=10, train_stride=3, test_stride=5)
    assert train[:, 0].tolist() == list(range(0, 61, 3))
    assert test[:, 0].tolist() == [70, 75, 80, 85, 90]


def test_window_longer_than_a_part_names_the_lengths() -> None:
    with pytest.raises(ConfigError, match=r"1000 samples.*test part of 300 samples.*window=400"):
        time_split_windows(np.zeros(1000), window=400, train_fraction=0.7)
    with pytest.raises(ShapeMismatchError, match=r"\(L,\).*\(2, 5\)"):
        time_split_windows(np.zeros((2, 5)), window=2)


# --- CWRU files ------------------------------------------------------------------------------


def test_read_cwru_npz(tmp_path: Path) -> None:
    de, fe = np.random.default_rng(0).standard_normal((2, 500, 1))
    np.savez(tmp_path / "rec.npz", DE=de, FE=fe)
    x = read_cwru(tmp_path / "rec.npz", channel="FE")
    assert x.dtype == np.float32 and x.shape == (500,)
    np.testing.assert_array_equal(x, fe[:, 0].astype(np.float32))
    with pytest.raises(DataFormatError, match=r"rec\.npz.*'BA'.*\['DE', 'FE'\]"):
        read_cwru(tmp_path / "rec.npz", channel="BA")


def test_read_cwru_mat_picks_the_channel_and_the_files_own_recording(tmp_path: Path) -> None:
    de, fe, other = np.random.default_rng(1).standard_normal((3, 400, 1))
    savemat(tmp_path / "98.mat", {"X099_DE_time": other, "X098_DE_time": de, "X098_FE_time": fe})
    savemat(tmp_path / "X.mat", {"X099_DE_time": other, "X098_DE_time": de, "X098RPM": 1797})
    np.testing.assert_array_equal(read_cwru(tmp_path / "98.mat"), de[:, 0].astype(np.float32))
    np.testing.assert_array_equal(read_cwru(tmp_path / "98.mat", "FE"), fe[:, 0].astype(np.float32))
    # A name without a number: the first recording by variable name.
    np.testing.assert_array_equal(read_cwru(tmp_path / "X.mat"), de[:, 0].astype(np.float32))
    with pytest.raises(DataFormatError, match=r"X\.mat.*'FE'.*\['DE'\]"):
        read_cwru(tmp_path / "X.mat", channel="FE")


def test_read_cwru_refuses_bad_files_and_channels(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataFormatError, match=r"bad\.npz"):
        read_cwru(tmp_path / "bad.npz")
    (tmp_path / "a.csv").write_text("1,2\n")
    with pytest.raises(DataFormatError, match=r"a\.csv.*\.npz or \.mat.*'\.csv'"):
        read_cwru(tmp_path / "a.csv")
    np.savez(tmp_path / "wide.npz", DE=np.zeros((10, 2)))
    with pytest.raises(DataFormatError, match=r"\(n, 1\).*\(10, 2\)"):
        read_cwru(tmp_path / "wide.npz")
    with pytest.raises(ConfigError, match="channel='XX'"):
        read_cwru(tmp_path / "wide.npz", channel="XX")


def test_cwru_classes_and_sample_rates() -> None:
    assert list(CWRU_CLASSES)[:2] == ["normal", "ball_007"] and len(CWRU_CLASSES) == 10
    assert CWRU_CLASSES["outer_021"] == "1797_OR@6_21_DE12.npz"
    assert cwru_sample_rate("1797_Normal.npz") == 48000
    assert cwru_sample_rate("1797_IR_7_DE48.npz") == 48000
    assert cwru_sample_rate("1797_IR_7_DE12.npz") == 12000
    assert cwru_sample_rate("97.mat") == 48000 and cwru_sample_rate("105.mat") == 12000


def test_to_sample_rate_keeps_a_tone_and_removes_what_would_alias() -> None:
    t = np.arange(48000) / 48000
    kept, aliased = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 10000 * t)
    y = to_sample_rate(kept + aliased, 48000, 12000)  # 10 kHz would fold to 2 kHz
    assert y.shape == (12000,) and y.dtype == np.float32
    middle = y[3000:9000].astype(np.float64)  # away from the filter's edge transients
    spectrum = np.abs(np.fft.rfft(middle)) * 2 / len(middle)  # 2 Hz bins: 1 kHz on a bin
    freqs = np.fft.rfftfreq(len(middle), 1 / 12000)
    assert spectrum[np.argmin(np.abs(freqs - 1000))] == pytest.approx(1.0, abs=0.02)
    assert spectrum[np.abs(freqs - 2000) < 5].max() < 0.01
    assert to_sample_rate(kept, 48000, 48000).dtype == np.float32


@needs_cwru
def test_real_cwru_files() -> None:
    assert read_cwru(CWRU_DIR / "1797_Normal.npz").shape == (243_938,)
    with pytest.raises(DataFormatError, match=r"1797_Normal\.npz.*'BA'.*\['DE', 'FE'\]"):
        read_cwru(CWRU_DIR / "1797_Normal.npz", channel="BA")
    for name in CWRU_CLASSES.values():
        assert CWRU_DIR.joinpath(name).is_file(), name


@needs_cwru
@pytest.mark.parametrize(("name", "key"), [("inner_007", "BPFI"), ("outer_007", "BPFO")])
def test_real_fault_recordings_show_their_fault_frequency(name: str, key: str) -> None:
    x = read_cwru(CWRU_DIR / CWRU_CLASSES[name])[: 8 * FS]
    expected = fault_frequencies(SHAFT_HZ)[key]
    assert envelope_peak(x) == pytest.approx(expected, rel=0.01)  # the speed varies ~0.3 %


@needs_cwru
def test_real_normal_baseline_is_48_khz() -> None:
    # Read at 48 kHz the baseline's spectrum has the 1x, 2x, 3x shaft lines (29.95 Hz);
    # read at 12 kHz they would sit at a quarter of those frequencies.
    x = read_cwru(CWRU_DIR / "1797_Normal.npz").astype(np.float64)
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / 48000)
    for harmonic in (1, 2, 3):
        assert _line(spectrum, freqs, harmonic * SHAFT_HZ) > 8


@needs_cwru
def test_cwru_splits_window_the_ten_classes() -> None:
    s = cwru_splits(CWRU_DIR, window=2048)
    assert s.classes == list(CWRU_CLASSES)
    assert s.x_train.shape[1:] == (1, 2048) and s.x_train.dtype == np.float32
    counts = np.bincount(s.y_train, minlength=10)
    # 243,938 samples at 48 kHz -> 60,985 at 12 kHz; 70 % -> 42,689 -> 40 windows at stride 1024
    assert counts[0] == 40 and counts[1:].min() >= 80
    assert np.bincount(s.y_test).tolist()[0] == 8 and len(s.x_test) == len(s.y_test)

    # The baseline: envelope spectrum + logistic regression on windows never seen in training.
    def features(x: np.ndarray) -> np.ndarray:
        spectrum = np.log1p(100 * envelope_spectrum(x[:, 0], FS, max_hz=500))
        return (spectrum - spectrum.mean()) / spectrum.std()

    clf = logistic_regression(features(s.x_train), s.y_train)
    assert clf.score(features(s.x_test), s.y_test) > 0.9
