"""Pictures of what a 1-D or audio network looks at: Grad-CAM over time drawn on the
waveform, Grad-CAM over time-frequency on the log-mel spectrogram, and the first layer's
filters with their frequency responses (matplotlib figures; the caller saves or closes).
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from cnnlab.core.errors import ConfigError


def waveform_cam_figure(
    waveform: np.ndarray | torch.Tensor, cam: np.ndarray | torch.Tensor, sample_rate: float,
    title: str = "",
) -> Any:  # fmt: skip
    """The waveform (L,) in black over its Grad-CAM (L,) as a colour band behind it."""
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    heat = np.asarray(cam, dtype=np.float32).reshape(1, -1)
    seconds = len(wave) / sample_rate
    fig, ax = plt.subplots(figsize=(6, 1.8))
    top = float(np.abs(wave).max()) or 1.0
    ax.imshow(heat, aspect="auto", cmap="jet", alpha=0.45, vmin=0, vmax=1,
              extent=(0, seconds, -top, top))  # fmt: skip
    ax.plot(np.arange(len(wave)) / sample_rate, wave, color="black", linewidth=0.5)
    ax.set_xlim(0, seconds)
    ax.set_ylim(-top, top)
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return fig


def spectrogram_cam_figure(
    spectrogram: np.ndarray | torch.Tensor, cam: np.ndarray | torch.Tensor, seconds: float,
    title: str = "",
) -> Any:  # fmt: skip
    """Log-mel spectrogram (n_mels, frames) in grey with its Grad-CAM (same size) over it."""
    spec = np.asarray(spectrogram, dtype=np.float32)
    heat = np.asarray(cam, dtype=np.float32)
    fig, ax = plt.subplots(figsize=(4, 2.2))
    extent = (0, seconds, 0, spec.shape[0])
    ax.imshow(spec, origin="lower", aspect="auto", cmap="gray", extent=extent)
    ax.imshow(heat, origin="lower", aspect="auto", cmap="jet", alpha=0.4, vmin=0, vmax=1,
              extent=extent)  # fmt: skip
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax.set_title(title, fontsize=9)
    return fig


def first_conv1d(model: nn.Module) -> nn.Conv1d:
    """The first Conv1d of ``model`` in definition order."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv1d)), None)
    if conv is None:
        raise ConfigError(f"{type(model).__name__} has no Conv1d layer")
    return conv


def filter_responses(weight: torch.Tensor, sample_rate: float, n_fft: int = 512) -> np.ndarray:
    """|FFT| in dB of each filter (out_channels, in_channels, k), summed over inputs:
    (out_channels, n_fft // 2 + 1), 0 dB at each filter's peak."""
    w = weight.detach().float().sum(1)  # (K, k)
    magnitude = torch.fft.rfft(w, n=max(n_fft, w.shape[-1]), dim=-1).abs().numpy()
    db = 20 * np.log10(np.maximum(magnitude, 1e-12))
    return db - db.max(axis=1, keepdims=True)


def filters_figure(model: nn.Module, sample_rate: float, shown: int = 16) -> Any:
    """The first Conv1d's filters (top: taps) and their frequency responses (bottom)."""
    conv = first_conv1d(model)
    weight = conv.weight.detach().float()[:shown]
    responses = filter_responses(weight, sample_rate)
    freqs = np.linspace(0, sample_rate / 2, responses.shape[1])
    fig, (taps, freq) = plt.subplots(2, 1, figsize=(6, 4))
    for k, w in enumerate(weight.sum(1).numpy()):
        taps.plot(w / (np.abs(w).max() or 1) + 2.2 * k, linewidth=0.7)
    taps.set_title(f"first-layer filters ({conv.kernel_size[0]} taps, {len(weight)} shown)",
                   fontsize=9)  # fmt: skip
    taps.set_yticks([])
    image = freq.imshow(responses, aspect="auto", origin="lower", cmap="magma", vmin=-40,
                        extent=(0, freqs[-1], 0, len(weight)))  # fmt: skip
    freq.set_xlabel("frequency (Hz)")
    freq.set_ylabel("filter")
    fig.colorbar(image, ax=freq, label="dB")
    fig.tight_layout()
    return fig
