"""The Free Spoken Digit Dataset: waveforms (N, 1, L) for classifiers, mu-law codes for
WaveNet.

Splits (``split``):
- ``"official"``: recordings numbered 0-4 of every digit and speaker test (300), 5-49
  train, as the dataset's README defines its test set;
- ``"random"``: a seeded, stratified random ``test_fraction`` of the recordings;
- ``"speakers"``: every recording of ``test_speakers`` tests: the model never heard
  those voices (the harder, fairer question for a speech model).

Recordings are 8 kHz mono and shorter than 1 s but for a few; each is cut or right-padded
with silence to ``seconds``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.data import download as _download
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Resolver
from cnnlab.data.mulaw import mu_law_encode
from cnnlab.data.real_sources import FSDD, FSDD_SPEAKERS
from cnnlab.data.registry import register_dataset
from cnnlab.data.wav import read_wav

SAMPLE_RATE = 8_000
_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")
SPLITS = ("official", "random", "speakers")


def read_fsdd(
    files: list[Path], sample_rate: int, length: int
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Waveforms (N, length) float32, digits (N,), speakers and recording numbers."""
    x = np.zeros((len(files), length), dtype=np.float32)
    digits, speakers, numbers = [], [], []
    for i, path in enumerate(files):
        match = _NAME.search(path.name)
        if match is None:
            raise ConfigError(f"{path}: expected a name like 3_theo_12.wav (digit_speaker_index)")
        samples, _ = read_wav(path, sample_rate=sample_rate)
        x[i, : min(length, len(samples))] = samples[:length]
        digits.append(int(match[1]))
        speakers.append(match[2])
        numbers.append(int(match[3]))
    return x, np.asarray(digits, dtype=np.int64), speakers, np.asarray(numbers)


def split_indices(
    split: str, speakers: list[str], numbers: np.ndarray, labels: np.ndarray, opts: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (ascending) of the recordings for ``split``."""
    n = len(speakers)
    if split == "official":
        test = numbers < 5
    elif split == "speakers":
        held = list(opts["test_speakers"])
        unknown = sorted(set(held) - set(speakers))
        if unknown or not held or set(held) >= set(speakers):
            raise ConfigError(
                f"fsdd: test_speakers={held}; expected a non-empty proper subset of "
                f"{sorted(set(speakers))}"
            )
        test = np.isin(np.asarray(speakers), held)
    elif split == "random":
        fraction = float(opts["test_fraction"])
        if not 0 < fraction < 1:
            raise ConfigError(f"fsdd: expected test_fraction in (0, 1), received {fraction}")
        rng = np.random.default_rng(int(opts["seed"]))
        test = np.zeros(n, dtype=bool)
        for digit in np.unique(labels):  # stratified: the same fraction of every digit
            members = np.flatnonzero(labels == digit)
            test[rng.permutation(members)[: round(len(members) * fraction)]] = True
    else:
        raise ConfigError(f"fsdd: split={split!r}; expected one of {', '.join(SPLITS)}")
    return np.flatnonzero(~test), np.flatnonzero(test)


def _recordings(resolver: Resolver) -> list[Path]:
    return sorted(_download.resolve(FSDD, resolver).values())


@register_dataset(
    "fsdd", title=FSDD.title, origin=FSDD.homepage,
    options={
        "split": "official", "test_speakers": ["theo"], "test_fraction": 0.2, "seed": 0,
        "seconds": 1.0, "sample_rate": SAMPLE_RATE,
    },
    facts={"num_classes": 10, "input_shape": (1, 8000), "train_size": 2700, "test_size": 300},
)  # fmt: skip
def load_fsdd(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """Spoken digits as waveforms (N, 1, seconds * sample_rate)."""
    rate = int(opts["sample_rate"])
    length = round(float(opts["seconds"]) * rate)
    if length < 1:
        raise ConfigError(f"load({name!r}): expected seconds > 0, received {opts['seconds']}")
    files = _recordings(resolver)
    x, y, speakers, numbers = read_fsdd(files, rate, length)
    train, test = split_indices(str(opts["split"]), speakers, numbers, y, opts)
    xt, yt = torch.from_numpy(x[:, None, :]), torch.from_numpy(y)
    held = f", test speakers {list(opts['test_speakers'])}" if opts["split"] == "speakers" else ""
    return ImageDataset(
        name, xt[train], yt[train], xt[test], yt[test], list(FSDD.classes),
        source=str(files[0].parent), extra={"split": f"{opts['split']}{held}"},
        preprocess={"kind": "audio", "sample_rate": rate, "length": length},
    )  # fmt: skip


@register_dataset(
    "fsdd-mulaw",
    title="FSDD as 8-bit mu-law codes for WaveNet, conditioned on the digit",
    origin=FSDD.homepage,
    options={"chunk": 4000, "split": "official", "test_speakers": ["theo"], "conditioned": True},
    task="generate",
    facts={"num_classes": 10, "input_shape": (4001,), "train_size": 2700, "test_size": 300},
)  # fmt: skip
def load_fsdd_mulaw(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """Each recording's first ``chunk`` + 1 samples as mu-law codes (silence-padded):
    inputs codes[:-1] (with the digit in column 0 when ``conditioned``), targets
    ``waveform`` = codes[1:], the next sample at every position."""
    chunk = int(opts["chunk"])
    files = _recordings(resolver)
    x, y, speakers, numbers = read_fsdd(files, SAMPLE_RATE, chunk + 1)
    codes = mu_law_encode(torch.from_numpy(x))
    inputs, targets = codes[:, :-1], codes[:, 1:]
    if opts["conditioned"]:
        inputs = torch.cat([torch.from_numpy(y)[:, None], inputs], dim=1)
    split = "official" if opts["split"] == "official" else "speakers"
    train, test = split_indices(split, speakers, numbers, y, opts)
    return ImageDataset(
        name, inputs[train], None, inputs[test], None, list(FSDD.classes),
        source=str(files[0].parent), task="generate",
        targets_train={"waveform": targets[train]}, targets_test={"waveform": targets[test]},
        extra={"split": split, "conditioned": "yes" if opts["conditioned"] else "no"},
        preprocess={"kind": "mulaw", "sample_rate": SAMPLE_RATE, "mu": 255},
    )  # fmt: skip


__all__ = ["FSDD_SPEAKERS", "load_fsdd", "load_fsdd_mulaw", "read_fsdd", "split_indices"]
