"""WAV files in and out (RIFF parsed here, so IEEE float and extensible files read too) and
band-limited resampling.

The stdlib ``wave`` module reads integer PCM only; datasets also ship 32-bit float and
WAVE_FORMAT_EXTENSIBLE files, so the chunks are parsed by hand (layout: Microsoft's
"Multiple Channel Audio Data and WAVE Files" and the RIFF specification).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError
from cnnlab.core.io import atomic_open

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# Bytes 2..15 of every KSDATAFORMAT_SUBTYPE_* GUID; bytes 0..1 hold the plain format code.
_SUBFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_SUPPORTED_BITS = {WAVE_FORMAT_PCM: (8, 16, 24, 32), WAVE_FORMAT_IEEE_FLOAT: (32, 64)}

# resample_poly's filter (scipy.signal): Kaiser-windowed sinc, 10 zero crossings a side.
_ZERO_CROSSINGS = 10
_KAISER_BETA = 5.0

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def read_wav(
    path: str | os.PathLike[str], *, sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """Read a WAV file as mono float32 samples.

    Reads integer PCM (8-bit unsigned, 16/24/32-bit signed), IEEE float (32/64-bit) and
    WAVE_FORMAT_EXTENSIBLE files holding either. Integers are scaled by ``2**(bits-1)``
    into [-1, 1]; float samples are returned as stored (not clipped). Several channels are
    mixed down to mono by averaging them.

    Args:
        path: the file.
        sample_rate: when given and different from the file's rate, the samples are
            resampled to it with :func:`resample` and this rate is returned.

    Returns:
        ``(samples, rate)``: samples of shape ``(L,)`` with ``L > 0``, and their rate in Hz.

    Raises:
        DataFormatError: not a RIFF/WAVE file, no ``fmt `` or ``data`` chunk, an unsupported
            format or bit depth, no samples, or a data chunk shorter than its header says.
    """
    if sample_rate is not None:
        _check_rate("sample_rate", sample_rate)
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataFormatError(
            f"{path}: expected a RIFF/WAVE file (bytes 0-3 'RIFF', 8-11 'WAVE'), "
            f"received {data[:4]!r} ... {data[8:12]!r}"
        )
    chunks = _read_chunks(data, path)
    for name in (b"fmt ", b"data"):
        if name not in chunks:
            found = ", ".join(repr(key.decode("latin-1")) for key in chunks) or "none"
            raise DataFormatError(
                f"{path}: expected a {name.decode()!r} chunk in the WAVE file, found: {found}"
            )
    code, channels, rate, bits, block_align = _parse_fmt(chunks[b"fmt "], path)
    frames = _decode(chunks[b"data"], code, channels, bits, block_align, path)
    samples = frames.mean(axis=1, dtype=np.float64).astype(np.float32)  # mono mixdown
    if sample_rate is not None and sample_rate != rate:
        return resample(samples, rate, sample_rate), sample_rate
    return samples, rate


def _read_chunks(data: bytes, path: object) -> dict[bytes, bytes]:
    """Chunk id -> payload for the chunks after the RIFF header (the first of each id)."""
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        name, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if len(body) < size:
            raise DataFormatError(
                f"{path}: truncated file: the {name.decode('latin-1')!r} chunk header says "
                f"{size} bytes, found {len(body)}"
            )
        chunks.setdefault(name, body)
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return chunks


def _parse_fmt(fmt: bytes, path: object) -> tuple[int, int, int, int, int]:
    """``(format code, channels, rate, bits per sample, block align)`` of a fmt chunk."""
    if len(fmt) < 16:
        raise DataFormatError(f"{path}: expected a fmt chunk of >= 16 bytes, received {len(fmt)}")
    code, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if code == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _SUBFORMAT_TAIL:
            raise DataFormatError(
                f"{path}: expected WAVE_FORMAT_EXTENSIBLE with a 40-byte fmt chunk and a "
                f"KSDATAFORMAT subformat GUID, received a {len(fmt)}-byte fmt chunk"
            )
        code = struct.unpack_from("<H", fmt, 24)[0]
    if code not in _SUPPORTED_BITS or bits not in _SUPPORTED_BITS[code]:
        raise DataFormatError(
            f"{path}: unsupported WAV encoding: format code 0x{code:04X} with {bits}-bit "
            "samples; expected PCM (0x0001) 8/16/24/32-bit or IEEE float (0x0003) 32/64-bit"
        )
    if channels == 0 or rate == 0 or block_align != channels * bits // 8:
        raise DataFormatError(
            f"{path}: inconsistent fmt chunk: expected channels > 0, rate > 0 and block "
            f"align = channels * bytes per sample = {channels * bits // 8}, received "
            f"channels={channels}, rate={rate}, block align={block_align}"
        )
    return code, channels, rate, bits, block_align


def _decode(
    payload: bytes, code: int, channels: int, bits: int, block_align: int, path: object
) -> np.ndarray:
    """The data chunk as float32 frames of shape ``(L, channels)``."""
    if len(payload) % block_align:
        raise DataFormatError(
            f"{path}: truncated data chunk: {len(payload)} bytes is not a whole number of "
            f"{block_align}-byte frames"
        )
    if not payload:
        raise DataFormatError(f"{path}: empty WAV file: expected at least one sample, found 0")
    raw = np.frombuffer(payload, dtype=np.uint8)
    values: np.ndarray
    if code == WAVE_FORMAT_IEEE_FLOAT:
        values = raw.view("<f4" if bits == 32 else "<f8").astype(np.float32)
        if not np.isfinite(values).all():
            raise DataFormatError(f"{path}: expected finite float samples, found NaN or inf")
    elif bits == 8:
        values = (raw.astype(np.float32) - 128) / 128  # 8-bit PCM is unsigned, 128 = silence
    elif bits == 24:
        # Little-endian 3-byte ints: put each in the top of an int32, then shift back down.
        wide = np.zeros((raw.size // 3, 4), dtype=np.uint8)
        wide[:, 1:] = raw.reshape(-1, 3)
        values = (wide.view("<i4")[:, 0] >> 8).astype(np.float32) / 2**23
    else:
        ints = raw.view("<i2" if bits == 16 else "<i4")
        values = (ints.astype(np.float64) / 2 ** (bits - 1)).astype(np.float32)
    return values.reshape(-1, channels)


def write_wav(
    path: str | os.PathLike[str], samples: np.ndarray | torch.Tensor, sample_rate: int
) -> None:
    """Write mono samples as a 16-bit PCM WAV file, atomically.

    Samples are clipped to [-1, 1], scaled by 32768 and rounded (so :func:`read_wav`
    returns them to within 1/65536). The file is written beside ``path`` and renamed over
    it: an error leaves the old file, or none, never half of one.

    Args:
        path: the file to write.
        samples: shape ``(L,)``, floats.
        sample_rate: in Hz.
    """
    _check_rate("sample_rate", sample_rate)
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1:
        raise ShapeMismatchError(
            f"Expected mono samples of shape (L,), received shape {tuple(samples.shape)}"
        )
    if not np.isfinite(samples).all():
        raise ConfigError("Expected finite samples, received NaN or inf")
    pcm = np.clip(np.round(np.clip(samples, -1, 1) * 32768), -32768, 32767).astype("<i2")
    payload = pcm.tobytes()
    # fmt: PCM, 1 channel, rate, byte rate, block align 2, 16 bits.
    fmt = struct.pack("<HHIIHH", WAVE_FORMAT_PCM, 1, sample_rate, 2 * sample_rate, 2, 16)
    header = b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(payload)) + b"WAVE"
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(payload)) + payload
    with atomic_open(path, "wb") as f:
        f.write(header + chunks)


def resample(x: ArrayOrTensor, orig_rate: int, new_rate: int) -> ArrayOrTensor:
    """Resample along the last axis with a band-limited polyphase filter.

    The ratio is reduced by its gcd to ``up / down``; the filter is a Kaiser-windowed
    (beta 5) sinc cut off at the lower of the two Nyquist rates, 10 zero crossings a side,
    the design of ``scipy.signal.resample_poly``, whose output this matches. Samples
    beyond the ends count as zeros. Differentiable for tensors.

    Args:
        x: shape ``(..., L)``; a NumPy array or a tensor, float (integers become float32).
        orig_rate: rate of ``x`` in Hz.
        new_rate: rate wanted in Hz.

    Returns:
        The same kind as ``x``, shape ``(..., ceil(L * new_rate / orig_rate))``.
    """
    _check_rate("orig_rate", orig_rate)
    _check_rate("new_rate", new_rate)
    if isinstance(x, np.ndarray):
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
        return resample(torch.from_numpy(np.asarray(x, dtype=dtype)), orig_rate, new_rate).numpy()
    if x.dim() == 0:
        raise ShapeMismatchError("Expected samples of shape (..., L), received a scalar")
    gcd = math.gcd(orig_rate, new_rate)
    up, down = new_rate // gcd, orig_rate // gcd
    if not x.is_floating_point():
        x = x.float()
    if up == down:
        return x
    *lead, length = x.shape
    out_length = -(-length * up // down)  # ceil
    if length == 0:
        return x.new_zeros(*lead, 0)
    weight, half = _polyphase_filter(up, down, x.dtype, x.device)
    # One conv1d: output channel r is the phase of the outputs n = r + up * k; each
    # phase's kernel is shifted so all phases read the input from the same offset.
    n_per_phase = -(-out_length // up)
    needed = (n_per_phase - 1) * down + weight.shape[-1]
    flat = x.reshape(-1, 1, length)
    padded = F.pad(flat, (half, max(needed - half - length, 0)))
    phases = F.conv1d(padded, weight, stride=down)[..., :n_per_phase]  # (N, up, n_per_phase)
    out = phases.transpose(1, 2).reshape(flat.shape[0], -1)[:, :out_length]
    return out.reshape(*lead, out_length)


def _polyphase_filter(
    up: int, down: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, int]:
    """conv1d weights ``(up, 1, K)`` and the left padding they expect, in input samples.

    Output ``n`` is ``sum_m x[m] * h(n * down - m * up)`` with ``h`` the low-pass filter
    on the upsampled grid (``h(t) = 0`` for ``|t| > half_len``), gain ``up``.
    """
    widest = max(up, down)
    half_len = _ZERO_CROSSINGS * widest
    t = torch.arange(-half_len, half_len + 1, dtype=torch.float64)
    taps = torch.sinc(t / widest) * torch.special.i0(
        _KAISER_BETA * torch.sqrt((1 - (t / half_len) ** 2).clamp(min=0))
    )
    taps = taps * (up / taps.sum())  # unit DC gain after zero-stuffing by `up`
    half = half_len // up + 1  # input samples the filter reaches on each side
    r = torch.arange(up)[:, None]
    offset = r * down // up  # phase r's first input sample, relative to the others
    i = torch.arange((up - 1) * down // up + 2 * half + 1)[None, :]
    t_at = (r * down - offset * up) + up * (offset + half - i)  # filter time of kernel tap i
    valid = (i >= offset) & (i <= offset + 2 * half) & (t_at.abs() <= half_len)
    weight = torch.where(valid, taps[(t_at + half_len).clamp(0, 2 * half_len)], 0.0)
    return weight[:, None, :].to(dtype=dtype, device=device), half


def _check_rate(name: str, rate: object) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise ConfigError(f"Expected {name} to be a positive integer (Hz), received {rate!r}")
