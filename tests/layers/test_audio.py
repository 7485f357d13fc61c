"""Audio front end against NumPy/SciPy (STFT, DCT), librosa (filterbanks, mel spectrogram,
MFCC), python_speech_features (HTK-style log filterbank energies and MFCC), published
mel-scale values and finite differences; SpecAugment's masks by counting them."""

from __future__ import annotations

import math
from typing import Any, Literal

import librosa
import numpy as np
import pytest
import python_speech_features as psf
import scipy.fft
import scipy.signal
import torch

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.layers.audio import (
    MFCC,
    LogMel,
    MelSpectrogram,
    SpecAugment,
    Spectrogram,
    dct_matrix,
    hz_to_mel,
    lifter_weights,
    mel_filterbank,
    mel_to_hz,
    preemphasis,
)


def noise(batch: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, length))


def randn(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))


# --- STFT --------------------------------------------------------------------------------


def numpy_stft(
    x: np.ndarray, n_fft: int, hop: int, win_length: int, window: str, center: bool
) -> np.ndarray:
    """Frame, window and rfft by hand: the definition torch.stft should follow."""
    if center:
        x = np.pad(x, [(0, 0), (n_fft // 2, n_fft // 2)], mode="reflect")
    name = "boxcar" if window == "rectangular" else window
    win = scipy.signal.get_window(name, win_length)  # periodic, as torch's windows
    left = (n_fft - win_length) // 2  # a short window sits in the middle of the frame
    win = np.pad(win, (left, n_fft - win_length - left))
    win = win.astype(np.float32).astype(np.float64)  # the layer's window buffer is float32
    n_frames = 1 + (x.shape[-1] - n_fft) // hop
    frames = np.stack([x[:, t * hop : t * hop + n_fft] for t in range(n_frames)], axis=-1)
    return np.fft.rfft(frames * win[:, None], axis=1)  # (B, n_fft // 2 + 1, frames)


@pytest.mark.parametrize(
    ("n_fft", "hop", "win_length", "window", "center"),
    [
        (64, 16, 64, "hann", True),
        (64, 20, 48, "hamming", True),
        (32, 32, 32, "rectangular", False),
        (50, 7, 31, "blackman", False),
    ],
)
def test_stft_matches_numpy(
    n_fft: int, hop: int, win_length: int, window: str, center: bool
) -> None:
    x = noise(3, 400)
    expected = numpy_stft(x, n_fft, hop, win_length, window, center)
    xt = torch.from_numpy(x)
    for power, oracle in [(2.0, np.abs(expected) ** 2), (1.0, np.abs(expected)), (None, expected)]:
        spec = Spectrogram(n_fft, hop, win_length, window, power, center)(xt)
        assert spec.shape == (3, 1, n_fft // 2 + 1, expected.shape[-1])
        np.testing.assert_allclose(spec[:, 0].numpy(), oracle, rtol=1e-10, atol=1e-10)


def test_spectrogram_input_forms_defaults_and_errors() -> None:
    x = randn(2, 1000)
    layer = Spectrogram()  # n_fft 256, hop 128, hann, power 2, centred
    out = layer(x)
    assert out.shape == (2, 1, 129, 1 + 1000 // 128) and out.dtype == torch.float32
    torch.testing.assert_close(layer(x[:, None]), out)
    assert "hop_length=128" in repr(layer)
    with pytest.raises(ShapeMismatchError, match=r"received \(2, 2, 1000\)"):
        layer(torch.randn(2, 2, 1000))
    with pytest.raises(ShapeMismatchError, match=r"received \(1000,\)"):
        layer(torch.randn(1000))
    with pytest.raises(ShapeMismatchError, match=r"at least 129 samples.*received 100"):
        layer(torch.randn(2, 100))
    with pytest.raises(ShapeMismatchError, match=r"at least 256 samples.*received 200"):
        Spectrogram(center=False)(torch.randn(2, 200))
    with pytest.raises(ConfigError, match="received win_length=300"):
        Spectrogram(256, win_length=300)
    with pytest.raises(ConfigError, match="received n_fft=0"):
        Spectrogram(0)
    with pytest.raises(ConfigError, match="received 'kaiser'"):
        Spectrogram(window="kaiser")


# --- mel scale and filterbank ------------------------------------------------------------


def test_mel_scales_against_published_values() -> None:
    hz = torch.tensor([0.0, 700.0, 1000.0, 6400.0], dtype=torch.float64)
    # HTK: m = 2595 log10(1 + f / 700); 1000 Hz is 999.99 mel (~1000 by design).
    htk = hz_to_mel(hz, "htk")
    torch.testing.assert_close(htk[:2], torch.tensor([0.0, 2595 * math.log10(2)], dtype=hz.dtype))
    assert abs(htk[2].item() - 999.99) < 0.01
    # Slaney (Auditory Toolbox): 3 mels per 200 Hz up to 1 kHz (= 15), then 27 mels per
    # factor 6.4, so 6400 Hz -> 42.
    slaney = hz_to_mel(hz, "slaney")
    torch.testing.assert_close(slaney, torch.tensor([0.0, 10.5, 15.0, 42.0], dtype=hz.dtype))
    grid = torch.linspace(0, 11025, 500, dtype=torch.float64)
    for scale in ("htk", "slaney"):
        expected = librosa.hz_to_mel(grid.numpy(), htk=scale == "htk")
        np.testing.assert_allclose(hz_to_mel(grid, scale).numpy(), expected, rtol=1e-12)
        torch.testing.assert_close(mel_to_hz(hz_to_mel(grid, scale), scale), grid)


@pytest.mark.parametrize("scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
@pytest.mark.parametrize(
    ("n_mels", "n_fft", "sr", "f_min", "f_max"),
    [(40, 512, 16000, 0.0, None), (26, 256, 8000, 300.0, 3700.0), (64, 1024, 22050, 20.0, 8000.0)],
)
def test_mel_filterbank_matches_librosa(
    scale: Literal["htk", "slaney"],
    norm: Literal["slaney"] | None,
    n_mels: int,
    n_fft: int,
    sr: int,
    f_min: float,
    f_max: float | None,
) -> None:
    fb = mel_filterbank(n_mels, n_fft, sr, f_min, f_max, scale, norm)
    expected = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max,
        htk=scale == "htk", norm=norm, dtype=np.float64,
    )  # fmt: skip
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == torch.float32
    # float32 rounding of weights <= 1 (slaney-normalised ones are ~1e-2).
    np.testing.assert_allclose(fb.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_mel_filterbank_peaks_match_python_speech_features() -> None:
    # psf rounds every band edge down to an FFT bin (floor((nfft + 1) f / sr)) before
    # drawing the triangles, so its weights differ from exact ones; what both must agree
    # on is where each filter peaks: the same bin, or one below (the floor).
    ours = mel_filterbank(26, 512, 16000).numpy()
    theirs = psf.get_filterbanks(26, 512, 16000)
    shift = ours.argmax(axis=1) - theirs.argmax(axis=1)
    assert set(shift.tolist()) <= {0, 1} and (shift == 0).sum() > 13


def test_mel_filterbank_errors_and_empty_filter_warning() -> None:
    with pytest.raises(ConfigError, match=r"received f_min=0\.0, f_max=5000"):
        mel_filterbank(10, 256, 8000, f_max=5000)
    with pytest.raises(ConfigError, match="received n_mels=0"):
        mel_filterbank(0, 256, 8000)
    with pytest.raises(ConfigError, match="received scale='bark'"):
        mel_filterbank(10, 256, 8000, scale="bark")  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="are all zero"):
        mel_filterbank(128, 64, 8000)


# --- mel spectrogram, log-mel, MFCC ------------------------------------------------------


# One configuration in both libraries' words: 8 kHz, 256-point FFT, 200-sample hann
# window, hop 100, 32 HTK mels from 50 Hz to 3.8 kHz, no filter normalisation.
OURS: dict[str, Any] = {"n_fft": 256, "hop_length": 100, "win_length": 200, "n_mels": 32, "f_min": 50.0,
        "f_max": 3800.0}  # fmt: skip
LIBROSA: dict[str, Any] = {"sr": 8000, "n_fft": 256, "hop_length": 100, "win_length": 200, "n_mels": 32,
           "fmin": 50.0, "fmax": 3800.0, "window": "hann", "center": True, "power": 2.0,
           "htk": True, "norm": None}  # fmt: skip


def librosa_mel(x: np.ndarray, pad_mode: Literal["reflect", "constant"]) -> np.ndarray:
    return np.stack([librosa.feature.melspectrogram(y=r, pad_mode=pad_mode, **LIBROSA) for r in x])


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_mel_spectrogram_matches_librosa(pad_mode: Literal["reflect", "constant"]) -> None:
    x = noise(2, 4000)
    mel = MelSpectrogram(8000, pad_mode=pad_mode, **OURS).double()
    out = mel(torch.from_numpy(x))
    assert out.shape == (2, 1, 32, 41)
    # float32 filterbank weights: ~1e-7 relative.
    np.testing.assert_allclose(out[:, 0].numpy(), librosa_mel(x, pad_mode), rtol=1e-6)


def test_log_mel_and_mfcc_match_librosa() -> None:
    x = noise(2, 4000, seed=1)
    log_expected = np.log(librosa_mel(x, "reflect") + 1e-6)
    log_mel = LogMel(8000, eps=1e-6, **OURS).double()
    np.testing.assert_allclose(log_mel(torch.from_numpy(x))[:, 0].numpy(), log_expected, rtol=1e-6)
    # librosa's orthonormal DCT-II applied to our log-mel convention (natural log; librosa's
    # own default is dB). Lifter 0: librosa lifts coefficient k by sin(pi (k + 1) / L),
    # HTK and psf by sin(pi k / L), which is ours (tested against psf below).
    mfcc_expected = np.stack([librosa.feature.mfcc(S=s, n_mfcc=13) for s in log_expected])
    mfcc = MFCC(8000, 13, eps=1e-6, **OURS).double()
    np.testing.assert_allclose(mfcc(torch.from_numpy(x))[:, 0].numpy(), mfcc_expected, atol=1e-5)


def test_log_filterbank_and_mfcc_match_python_speech_features() -> None:
    # psf's conventions built from our pieces: pre-emphasis 0.97, frames not centred, a
    # rectangular window as long as the FFT (256 = 32 ms at 8 kHz, so psf does no zero
    # padding), power spectrum / NFFT, and psf's own (floor-quantised) filterbank, so the
    # filterbank difference tested above does not hide the rest.
    sr, n_fft, hop, nfilt = 8000, 256, 128, 26
    signal = noise(1, n_fft + hop * 30, seed=7)[0]  # whole frames: psf pads the last one
    energies, frame_energy = psf.fbank(
        signal, samplerate=sr, winlen=n_fft / sr, winstep=hop / sr, nfilt=nfilt, nfft=n_fft
    )
    x = torch.from_numpy(signal)[None]
    emphasised = preemphasis(x, 0.97)
    np.testing.assert_allclose(emphasised[0].numpy(), psf.sigproc.preemphasis(signal, 0.97))
    spectrogram = Spectrogram(n_fft, hop, window="rectangular", center=False)
    power = spectrogram(emphasised) / n_fft  # (1, 1, 129, 31)
    fb = torch.from_numpy(psf.get_filterbanks(nfilt, n_fft, sr))
    ours = torch.matmul(fb, power)[0, 0].T  # (frames, nfilt), psf's layout
    np.testing.assert_allclose(ours.numpy(), energies, rtol=1e-10)
    np.testing.assert_allclose(power[0, 0].sum(0).numpy(), frame_energy, rtol=1e-10)
    expected = psf.mfcc(
        signal, samplerate=sr, winlen=n_fft / sr, winstep=hop / sr, numcep=13, nfilt=nfilt,
        nfft=n_fft, ceplifter=22, appendEnergy=False,
    )  # fmt: skip
    cepstra = dct_matrix(13, nfilt).double() @ torch.log(ours.T) * lifter_weights(13, 22)[:, None]
    np.testing.assert_allclose(cepstra.T.numpy(), expected, rtol=1e-5, atol=1e-5)  # float32 DCT


def test_dct_and_lifter_against_scipy_and_psf() -> None:
    x = np.random.default_rng(0).standard_normal((40, 7))
    d = dct_matrix(13, 40).double()
    expected = scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:13]
    np.testing.assert_allclose((d @ torch.from_numpy(x)).numpy(), expected, atol=1e-6)
    full = dct_matrix(40, 40).double()
    torch.testing.assert_close(full @ full.T, torch.eye(40, dtype=torch.float64), atol=1e-6, rtol=0)
    c = np.random.default_rng(1).standard_normal((5, 13))
    np.testing.assert_allclose(
        c * lifter_weights(13, 22).numpy(), psf.base.lifter(c, 22), rtol=1e-6
    )
    assert torch.equal(lifter_weights(13, 0), torch.ones(13))
    with pytest.raises(ConfigError, match="received n_mfcc=41"):
        dct_matrix(41, 40)
    with pytest.raises(ConfigError, match="received lifter=-1"):
        MFCC(8000, lifter=-1)


def test_log_mel_top_db_floor_and_silence() -> None:
    t = torch.arange(2000) / 8000
    x = torch.stack([torch.sin(2 * math.pi * 1000 * t), 0 * t, torch.sin(2 * math.pi * 3000 * t)])
    x = x + 1e-3 * randn(3, 2000)
    x[1] = 0  # silence: log(eps), not -inf
    plain = LogMel(8000)(x)
    assert plain.shape == (3, 1, 40, 16) and torch.isfinite(plain).all()
    torch.testing.assert_close(plain[1], torch.full_like(plain[1], math.log(1e-6)))
    floored = LogMel(8000, top_db=30.0)(x)
    floor = plain.amax(dim=(1, 2, 3), keepdim=True) - 3 * math.log(10)  # 30 dB = ln(10^3)
    torch.testing.assert_close(floored, torch.maximum(plain, floor))
    assert (floored[[0, 2]] > plain[[0, 2]]).any()  # tones: far mels are > 30 dB down
    with pytest.raises(ConfigError, match="received top_db=0"):
        LogMel(8000, top_db=0)


# --- autograd, no_grad, devices and dtypes -----------------------------------------------


def test_gradients_flow_and_match_finite_differences() -> None:
    x = randn(2, 24, dtype=torch.float64).requires_grad_()
    spec = Spectrogram(8, 4).double()
    assert torch.autograd.gradcheck(spec, (x,))
    log_mel = LogMel(8000, n_fft=16, hop_length=8, n_mels=4, eps=1e-3).double()
    assert torch.autograd.gradcheck(log_mel, (x,))
    mfcc = MFCC(8000, 3, n_fft=16, hop_length=8, n_mels=4, lifter=4).double()
    mfcc(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_buffers_follow_to_and_stay_out_of_the_state_dict() -> None:
    mfcc = MFCC(8000)
    names = {name for name, _ in mfcc.named_buffers()}
    assert names == {"dct", "lifter", "log_mel.filterbank", "log_mel.spectrogram.window"}
    assert mfcc.state_dict() == {}  # derived from the arguments, not weights
    mfcc.double()
    assert all(b.dtype == torch.float64 for b in mfcc.buffers())
    x = randn(4, 1, 3000, dtype=torch.float64)
    with torch.no_grad():
        out = mfcc(x)
    assert out.shape == (4, 1, 13, 24) and out.dtype == torch.float64 and not out.requires_grad
    # Each example is processed on its own: the batch gives what single examples give.
    single = torch.cat([mfcc(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(out, single)


# --- SpecAugment -------------------------------------------------------------------------


def masked_runs(mask: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-d bool tensor."""
    runs, current = [], 0
    for value in [*mask.tolist(), False]:
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


@pytest.mark.parametrize("axis", ["freq", "time"])
def test_spec_augment_masks_are_bands_of_at_most_the_width(axis: str) -> None:
    n_freq, n_time = (1, 0) if axis == "freq" else (0, 1)
    layer = SpecAugment(n_freq, 5, n_time, 7).train()
    width = 5 if axis == "freq" else 7
    g = torch.Generator().manual_seed(0)
    x = torch.ones(200, 2, 20, 30)
    out = layer(x, generator=g)
    zeros = out == 0
    assert torch.equal(zeros[:, 0], zeros[:, 1])  # channels share the masks
    # Whole rows (freq) or columns (time) are masked: one band per example, <= width.
    lines = zeros[:, 0].all(dim=2) if axis == "freq" else zeros[:, 0].all(dim=1)
    assert torch.equal(zeros[:, 0].any(dim=2 if axis == "freq" else 1), lines)
    lengths = [sum(masked_runs(row)) for row in lines]
    assert all(len(masked_runs(row)) <= 1 for row in lines)
    assert max(lengths) == width and min(lengths) == 0  # the draw covers 0..width
    two = (SpecAugment(3, 4, 0, 0).train()(x, generator=g) == 0)[:, 0].all(dim=2)
    assert two.sum(dim=1).max() <= 12  # three masks of width <= 4


def test_spec_augment_is_reproducible_per_generator_and_identity_in_eval() -> None:
    x = randn(8, 1, 40, 50)
    layer = SpecAugment()
    a = layer(x, generator=torch.Generator().manual_seed(3))
    b = layer(x, generator=torch.Generator().manual_seed(3))
    c = layer(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal((a == 0)[0], (a == 0)[1])  # examples get their own masks
    torch.manual_seed(9)
    d = layer(x)
    torch.manual_seed(9)
    assert torch.equal(d, layer(x))  # the global RNG when no generator is given
    layer.eval()
    assert layer(x) is x
    with torch.no_grad():
        assert layer.train()(x).shape == x.shape


def test_spec_augment_mean_fill_and_errors() -> None:
    x = randn(4, 2, 16, 20).abs() + 1
    out = SpecAugment(2, 6, 2, 6, fill="mean").train()(
        x, generator=torch.Generator().manual_seed(1)
    )
    changed = out != x
    means = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    assert changed.any()
    torch.testing.assert_close(out[changed], means[changed])
    with pytest.raises(ShapeMismatchError, match=r"received \(4, 16, 20\)"):
        SpecAugment().train()(x[:, 0])
    with pytest.raises(ConfigError, match="received freq_width=-1"):
        SpecAugment(freq_width=-1)
    with pytest.raises(ConfigError, match="received fill='noise'"):
        SpecAugment(fill="noise")  # type: ignore[arg-type]
