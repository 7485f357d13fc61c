"""CWRU bearing faults (10 classes) and synthetic bearing signals, as windows (N, 1, L).

Each recording is split by TIME before it is cut into windows: the first
``train_fraction`` of it trains, the rest tests, and windows overlap only inside a part.
Random splits of overlapping windows put the same samples on both sides and inflate the
accuracies often published for CWRU; this split cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataFormatError
from cnnlab.data import download as _download
from cnnlab.data.bearing import (
    cwru_sample_rate,
    read_cwru,
    synthetic_bearing_dataset,
    time_split_windows,
    to_sample_rate,
)
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Resolver
from cnnlab.data.real_sources import CWRU, CWRU_FILES, CWRU_MAT_NUMBERS
from cnnlab.data.registry import register_dataset

SAMPLE_RATE = 12_000  # Hz, the drive-end accelerometer of the 12k recordings


@register_dataset(
    "cwru", title=CWRU.title, origin=CWRU.homepage,
    options={
        "window": 2048, "train_fraction": 0.7, "train_stride": 256, "test_stride": 2048,
        "channel": "DE", "path": None,
    },
    facts={
        "num_classes": 10, "input_shape": (1, 2048),
        "train_size": CWRU.train_size, "test_size": CWRU.test_size,
    },
)  # fmt: skip
def load_cwru(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """The 0-HP drive-end task from the verified .npz copies, or from ``path``: a folder of
    CWRU's own .mat files (97.mat, 105.mat, ...) or of the .npz files."""
    window = int(opts["window"])
    files = _recordings(name, resolver, opts.get("path"))
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for path in files.values():
        # The normal baseline is recorded at 48 kHz, the faults at 12 kHz: bring it down,
        # or the class would be told apart by its sampling rate (and get 4x the windows).
        signal = to_sample_rate(
            read_cwru(path, channel=str(opts["channel"])), cwru_sample_rate(path.name), SAMPLE_RATE
        )
        try:
            parts.append(
                time_split_windows(
                    signal, window=window, train_fraction=float(opts["train_fraction"]),
                    train_stride=int(opts["train_stride"]), test_stride=int(opts["test_stride"]),
                )
            )  # fmt: skip
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    x_train, y_train = _stack([p[0] for p in parts])
    x_test, y_test = _stack([p[1] for p in parts])
    where = ", ".join(sorted({str(p.parent) for p in files.values()}))
    split = (
        f"by time: first {opts['train_fraction']:.0%} of each recording trains "
        f"(stride {opts['train_stride']}), the rest tests (stride {opts['test_stride']})"
    )
    return ImageDataset(
        name, x_train, y_train, x_test, y_test, list(CWRU_FILES), source=where,
        extra={"split": split, "channel": str(opts["channel"])},
        preprocess={
            "kind": "signal", "window": window, "stride": int(opts["test_stride"]),
            "channel": str(opts["channel"]), "sample_rate": SAMPLE_RATE,
        },
    )  # fmt: skip


def _recordings(name: str, resolver: Resolver, path: Any) -> dict[str, Path]:
    """Class name -> recording file, from the verified sources or a user's folder."""
    if path is None:
        found = _download.resolve(CWRU, resolver)
        return {cls: found[file] for cls, file in CWRU_FILES.items()}
    folder = Path(path).expanduser()
    chosen: dict[str, Path] = {}
    for cls, file in CWRU_FILES.items():
        candidates = [folder / file, folder / f"{CWRU_MAT_NUMBERS[cls]}.mat"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise DataFormatError(
                f"load({name!r}, path={str(folder)!r}): no recording for class {cls!r}; "
                f"expected {candidates[0].name} or {candidates[1].name} in that folder"
            )
        chosen[cls] = hit
    return chosen


def _stack(per_class: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of each class (n_k, L) -> x (N, 1, L) float32 and labels (N,) int64."""
    x = np.concatenate(per_class)[:, None, :].astype(np.float32)
    y = np.concatenate([np.full(len(w), k, dtype=np.int64) for k, w in enumerate(per_class)])
    return torch.from_numpy(x), torch.from_numpy(y)


@register_dataset(
    "bearing-synthetic",
    title="synthetic bearing vibration: normal, outer, inner, ball faults at a chosen SNR",
    origin="generated (cnnlab.data.bearing.bearing_signal)",
    options={"n_per_class": 200, "window": 2048, "snr_db": 0.0, "seed": 0, "test_fraction": 0.25},
    facts={"num_classes": 4, "input_shape": (1, 2048), "train_size": 600, "test_size": 200},
)  # fmt: skip
def load_bearing_synthetic(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """Independent generated windows per split (train and test never share a recording)."""
    n, fraction = int(opts["n_per_class"]), float(opts["test_fraction"])
    if not 0 < fraction < 1:
        raise ConfigError(f"load({name!r}): expected test_fraction in (0, 1), received {fraction}")
    n_test = max(1, round(n * fraction))
    seed, window, snr = int(opts["seed"]), int(opts["window"]), float(opts["snr_db"])
    x_train, y_train, classes = synthetic_bearing_dataset(n - n_test, window, snr, 2 * seed)
    x_test, y_test, _ = synthetic_bearing_dataset(n_test, window, snr, 2 * seed + 1)
    return ImageDataset(
        name, torch.as_tensor(x_train), torch.as_tensor(y_train, dtype=torch.int64),
        torch.as_tensor(x_test), torch.as_tensor(y_test, dtype=torch.int64), list(classes),
        source="generated", extra={"split": f"independent draws, seed {seed}, SNR {snr} dB"},
        preprocess={"kind": "signal", "window": window, "stride": window, "sample_rate": 12_000},
    )  # fmt: skip
