"""WAV reading against files built byte by byte, by stdlib ``wave`` and by soundfile (libsndfile);
resampling against scipy.signal.resample_poly and against sines with known values."""

from __future__ import annotations

import math
import os
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile
import torch

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError
from cnnlab.data.wav import read_wav, resample, write_wav

KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def chunk(name: bytes, body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return name + struct.pack("<I", size) + body + b"\x00" * (len(body) & 1)


def fmt_body(code: int, channels: int, rate: int, bits: int) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", code, channels, rate, rate * align, align, bits)


def extensible_body(subformat: int, channels: int, rate: int, bits: int, valid: int) -> bytes:
    base = fmt_body(0xFFFE, channels, rate, bits)
    guid = struct.pack("<H", subformat) + KSDATAFORMAT_TAIL
    return base + struct.pack("<HHI", 22, valid, 0) + guid


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_bytes(tmp_path: Path, payload: bytes, name: str = "x.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


# --- reading each encoding ---------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_written_by_stdlib_wave(tmp_path: Path, width: int) -> None:
    rng = np.random.default_rng(width)
    bits = 8 * width
    if width == 1:
        ints = rng.integers(0, 256, 500)
        expected = (ints - 128) / 128  # 8-bit WAV is unsigned with 128 as zero
        frames = ints.astype(np.uint8).tobytes()
    else:
        ints = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), 500)
        ints[:2] = [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1]  # both extremes
        expected = ints / 2 ** (bits - 1)
        frames = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
    path = tmp_path / "pcm.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(11025)
        w.writeframes(frames)
    samples, rate = read_wav(path)
    assert rate == 11025 and samples.dtype == np.float32 and samples.shape == (500,)
    np.testing.assert_allclose(samples, expected, rtol=0, atol=1e-7)  # float32 of the exact value
    assert (
        samples.min() >= -1 and samples.max() <= 1
    )  # 32-bit: (2**31 - 1) / 2**31 rounds to 1.0 in float32


@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
def test_ieee_float(tmp_path: Path, dtype: str) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 300).astype(dtype)
    bits = 8 * np.dtype(dtype).itemsize
    fact = chunk(b"fact", struct.pack("<I", x.size))  # float files carry a fact chunk
    path = write_bytes(
        tmp_path,
        riff(chunk(b"fmt ", fmt_body(3, 1, 16000, bits)), fact, chunk(b"data", x.tobytes())),
    )
    samples, rate = read_wav(path)
    assert rate == 16000
    np.testing.assert_array_equal(samples, x.astype(np.float32))


@pytest.mark.parametrize(
    ("subformat", "bits", "valid", "dtype"),
    [(1, 16, 16, "<i2"), (1, 32, 24, "<i4"), (3, 32, 32, "<f4")],
    ids=["pcm16", "pcm24-in-32", "float32"],
)
def test_wave_format_extensible(
    tmp_path: Path, subformat: int, bits: int, valid: int, dtype: str
) -> None:
    rng = np.random.default_rng(bits)
    if subformat == 3:
        x = rng.uniform(-1, 1, 200).astype(dtype)
        expected = x
    else:
        # 24 valid bits sit in the top of a 32-bit container (low byte zero).
        x = (rng.integers(-(2 ** (valid - 1)), 2 ** (valid - 1), 200) << (bits - valid)).astype(
            dtype
        )
        expected = x / 2 ** (bits - 1)
    fmt = extensible_body(subformat, 1, 22050, bits, valid)
    path = write_bytes(tmp_path, riff(chunk(b"fmt ", fmt), chunk(b"data", x.tobytes())))
    samples, rate = read_wav(path)
    assert rate == 22050
    np.testing.assert_allclose(samples, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
@pytest.mark.parametrize(("container", "channels"), [("WAV", 1), ("WAV", 2), ("WAVEX", 3)])
def test_matches_libsndfile(tmp_path: Path, subtype: str, container: str, channels: int) -> None:
    x = np.random.default_rng(channels).uniform(-0.9, 0.9, (400, channels))
    path = tmp_path / "sf.wav"
    soundfile.write(str(path), x, 44100, subtype=subtype, format=container)
    code = struct.unpack_from("<H", path.read_bytes(), path.read_bytes().find(b"fmt ") + 8)[0]
    assert code == (0xFFFE if container == "WAVEX" else 3 if subtype in ("FLOAT", "DOUBLE") else 1)
    expected, sf_rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    samples, rate = read_wav(path)
    assert rate == sf_rate == 44100
    np.testing.assert_allclose(samples, expected.mean(axis=1), rtol=0, atol=1e-6)


def test_stereo_is_averaged_and_odd_chunks_skipped(tmp_path: Path) -> None:
    left = np.array([1000, -2000, 3000, 32767], dtype="<i2")
    right = np.array([-1000, 0, 1000, 32767], dtype="<i2")
    interleaved = np.stack([left, right], axis=1).tobytes()  # L R L R ...
    odd = chunk(b"LIST", b"INFOabc")  # 7 bytes: one pad byte follows
    path = write_bytes(
        tmp_path, riff(chunk(b"fmt ", fmt_body(1, 2, 8000, 16)), odd, chunk(b"data", interleaved))
    )
    samples, rate = read_wav(path)
    assert rate == 8000
    np.testing.assert_allclose(samples, (left / 32768 + right / 32768) / 2, atol=1e-7)


# --- errors ------------------------------------------------------------------------------

PCM_FMT = chunk(b"fmt ", fmt_body(1, 1, 8000, 16))
DATA = chunk(b"data", np.zeros(10, "<i2").tobytes())


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"hello, this is text and not audio", "expected a RIFF/WAVE file"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "expected a RIFF/WAVE file"),
        (b"RIF", "expected a RIFF/WAVE file"),
        (riff(DATA), "expected a 'fmt ' chunk.*found: 'data'"),
        (riff(PCM_FMT), "expected a 'data' chunk.*found: 'fmt '"),
        (riff(PCM_FMT, chunk(b"data", b"")), "empty WAV file.*found 0"),
        (riff(chunk(b"fmt ", fmt_body(2, 1, 8000, 4)), DATA), "format code 0x0002 with 4-bit"),
        (riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 12)), DATA), "0x0001 with 12-bit"),
        (riff(chunk(b"fmt ", fmt_body(3, 1, 8000, 16)), DATA), "0x0003 with 16-bit"),
        (riff(chunk(b"fmt ", extensible_body(2, 1, 8000, 16, 16)), DATA), "0x0002 with 16"),
        (riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 16)[:12]), DATA), "fmt chunk of >= 16 bytes"),
        (riff(chunk(b"fmt ", fmt_body(1, 0, 8000, 16)), DATA), "received channels=0"),
        (riff(PCM_FMT, chunk(b"data", b"\x00" * 7)), "7 bytes is not a whole number of 2-byte"),
        (
            riff(chunk(b"fmt ", fmt_body(3, 1, 8000, 32)), chunk(b"data", b"\x00\x00\xc0\x7f")),
            "finite float samples",
        ),
    ],
    ids=[
        "text",
        "avi",
        "tiny",
        "no-fmt",
        "no-data",
        "empty",
        "adpcm",
        "pcm12",
        "float16",
        "ext-adpcm",
        "short-fmt",
        "no-channels",
        "partial-frame",
        "nan",
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, payload: bytes, match: str) -> None:
    path = write_bytes(tmp_path, payload, "bad_file.wav")
    with pytest.raises(DataFormatError, match=match) as info:
        read_wav(path)
    assert "bad_file.wav" in str(info.value)


def test_truncated_data_says_expected_and_found(tmp_path: Path) -> None:
    whole = riff(PCM_FMT, chunk(b"data", np.arange(100, dtype="<i2").tobytes()))
    path = write_bytes(tmp_path, whole[:-50], "cut.wav")  # the data header still says 200
    with pytest.raises(DataFormatError, match=r"cut\.wav: truncated.*says 200 bytes, found 150"):
        read_wav(path)


# --- writing -----------------------------------------------------------------------------


def test_write_read_round_trip_and_stdlib_reads_it(tmp_path: Path) -> None:
    x = np.random.default_rng(3).uniform(-1, 1, 1234)
    x[:4] = [1.0, -1.0, 1.7, -3.0]  # full scale, and out of range (clipped)
    path = tmp_path / "sub" / "out.wav"
    write_wav(path, torch.from_numpy(x), 16000)
    samples, rate = read_wav(path)
    assert rate == 16000 and samples.shape == x.shape
    clipped = np.clip(x, -1, 1)
    # Rounding to the 16-bit grid moves a sample by half a step, except +1.0 -> 32767/32768.
    assert np.abs(samples[4:] - clipped[4:]).max() <= 0.5 / 32768 + 1e-9
    np.testing.assert_array_equal(samples[:4], [32767 / 32768, -1.0, 32767 / 32768, -1.0])
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == 1234
    assert os.listdir(path.parent) == ["out.wav"]  # no temp file left behind


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.wav"
    write_wav(path, np.zeros(8), 8000)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="finite"):
        write_wav(path, np.array([0.0, np.nan]), 8000)

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("cnnlab.core.io.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_wav(path, np.ones(100), 8000)
    with pytest.raises(OSError, match="disk full"):
        write_wav(tmp_path / "new.wav", np.ones(100), 8000)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.wav"]


def test_write_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ShapeMismatchError, match=r"received shape \(2, 3\)"):
        write_wav(tmp_path / "a.wav", np.zeros((2, 3)), 8000)
    with pytest.raises(ConfigError, match="received 0"):
        write_wav(tmp_path / "a.wav", np.zeros(3), 0)
    assert not (tmp_path / "a.wav").exists()


# --- resampling --------------------------------------------------------------------------

RATIOS = [(16000, 8000), (8000, 16000), (44100, 16000), (48000, 44100), (8000, 22050), (3, 7)]


@pytest.mark.parametrize(("orig", "new"), RATIOS)
def test_resample_matches_scipy_resample_poly(orig: int, new: int) -> None:
    rng = np.random.default_rng(orig + new)
    t = np.arange(2000) / orig
    x = np.stack([np.sin(2 * np.pi * 0.1 * orig * t), rng.standard_normal(2000)])
    g = math.gcd(orig, new)
    expected = scipy.signal.resample_poly(x, new // g, orig // g, axis=-1)
    # Same filter design, so float64 agrees to rounding (sums of ~60 taps of size <= 1).
    np.testing.assert_allclose(resample(x, orig, new), expected, rtol=0, atol=1e-12)
    # float32: ~60 products of values <= 4 (noise) each off by ~1e-7 relative -> ~1e-5.
    out32 = resample(torch.from_numpy(x).float(), orig, new)
    assert isinstance(out32, torch.Tensor) and out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("length", [1, 2, 3, 10, 101])
@pytest.mark.parametrize(("orig", "new"), RATIOS)
def test_resample_length_is_ceil(length: int, orig: int, new: int) -> None:
    out = resample(np.ones((2, 3, length), np.float32), orig, new)
    assert out.shape == (2, 3, math.ceil(length * new / orig)) and out.dtype == np.float32


@pytest.mark.parametrize(
    ("orig", "new", "freq"), [(16000, 8000, 440.0), (8000, 16000, 1000.0), (44100, 16000, 3000.0)]
)
def test_resample_keeps_a_sine_below_nyquist(orig: int, new: int, freq: float) -> None:
    x = np.sin(2 * np.pi * freq * np.arange(orig) / orig)  # one second
    y = resample(x, orig, new)
    expected = np.sin(2 * np.pi * freq * np.arange(new) / new)
    inner = slice(new // 10, -new // 10)  # away from the zero-padded ends
    # A Kaiser (beta 5) design ripples by ~1e-3 (-60 dB) in the passband.
    np.testing.assert_allclose(y[inner], expected[inner], rtol=0, atol=3e-3)


def test_resample_removes_tones_above_the_new_nyquist() -> None:
    x = np.sin(2 * np.pi * 5000 * np.arange(16000) / 16000)  # aliases to 3 kHz at 8 kHz
    y = resample(x, 16000, 8000)
    assert np.sqrt(np.mean(y[800:-800] ** 2)) < 3e-3  # the sine's rms is 0.707: > 47 dB down


def test_resample_tensor_batch_gradient_and_identity() -> None:
    x = torch.randn(2, 3, 50, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: resample(v, 3, 2), (x,))
    assert resample(x, 8000, 8000) is x
    assert resample(x, 16000, 32000).shape == (2, 3, 100)
    assert resample(np.arange(5), 1, 2).dtype == np.float32  # integers become float32
    for bad in (0, -8000, 8000.0, True):
        with pytest.raises(ConfigError, match="positive integer"):
            resample(x, bad, 8000)  # type: ignore[arg-type]


def test_read_wav_resamples_to_the_asked_rate(tmp_path: Path) -> None:
    x = np.sin(2 * np.pi * 300 * np.arange(800) / 8000)
    path = tmp_path / "r.wav"
    write_wav(path, x, 8000)
    native, rate = read_wav(path)
    same, same_rate = read_wav(path, sample_rate=8000)
    up, up_rate = read_wav(path, sample_rate=16000)
    assert (rate, same_rate, up_rate) == (8000, 8000, 16000)
    np.testing.assert_array_equal(same, native)
    assert up.shape == (1600,) and up.dtype == np.float32
    np.testing.assert_allclose(up, resample(native, 8000, 16000), atol=1e-6)


def test_reads_a_real_fsdd_recording(shared_data: Path) -> None:
    folder = shared_data / "fsdd" / "recordings"
    if not folder.is_dir():
        pytest.skip(f"no FSDD recordings: expected them in {folder}")
    path = sorted(folder.glob("*.wav"))[0]
    samples, rate = read_wav(path)
    assert rate == 8000 and samples.ndim == 1 and samples.size > 0
    with wave.open(str(path), "rb") as w:  # FSDD is 16-bit PCM mono: stdlib reads it too
        ints = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    np.testing.assert_array_equal(samples, ints / 32768)
