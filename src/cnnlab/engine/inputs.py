"""Raw inputs -> model inputs, as the saved model's record says training prepared them.

Images go through ``predictor.read_image``. The other kinds follow the dataset's
``preprocess`` entry (cnnlab.data.dataset.ImageDataset.preprocess), kept in the model's
record:

- ``text``: a sentence -> token ids (1, max_len) with the training vocabulary;
- ``audio``: a WAV file -> (1, 1, length) at the training sample rate (resampled when the
  file's rate differs; stereo mixed to mono), cut or padded with silence like training;
- ``signal``: a recording (.npz/.mat as CWRU ships them, .npy, or a WAV) -> every
  window of it (n, 1, window), stepped by the training test stride.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataFormatError

KINDS = ("text", "audio", "signal")


def prepare(item: str, preprocess: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """(name, model input batch) pairs for one command-line item.

    A text model takes ``item`` as a sentence, or, when it names an existing file, each
    non-empty line of that UTF-8 file as one sentence. Audio and signal models read the
    file ``item``.

    Raises:
        ConfigError: a record kind this reader does not know.
        DataFormatError, OSError, ValueError: the file cannot be read as expected.
    """
    kind = preprocess.get("kind")
    if kind == "text":
        return _text(item, preprocess)
    if kind == "audio":
        return [(item, read_audio(item, preprocess))]
    if kind == "signal":
        return [(item, read_signal(item, preprocess))]
    raise ConfigError(f"the model's record has preprocess kind {kind!r}; expected one of {KINDS}")


def _text(item: str, preprocess: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    if os.path.isfile(item):
        lines = [line.strip() for line in Path(item).read_text(encoding="utf-8").splitlines()]
        sentences = [(f"{item}:{n}", line) for n, line in enumerate(lines, 1) if line]
    else:
        sentences = [(item, item)]
    from cnnlab.data.text import Vocabulary

    vocab = Vocabulary.from_dict(preprocess["vocabulary"])  # ~18k words: read once per item
    return [(name, encode_text(text, preprocess, vocab)) for name, text in sentences]


def encode_text(text: str, preprocess: dict[str, Any], vocab: Any = None) -> torch.Tensor:
    """One sentence -> int64 ids (1, max_len), tokenised and looked up as in training
    (``vocab``: the record's Vocabulary when the caller has built it already)."""
    from cnnlab.data.text import Vocabulary, tokenize

    vocab = vocab or Vocabulary.from_dict(preprocess["vocabulary"])
    return vocab.encode_batch([tokenize(text)], int(preprocess["max_len"]))


def read_audio(path: str | os.PathLike[str], preprocess: dict[str, Any]) -> torch.Tensor:
    """A WAV file -> float32 (1, 1, length) at the training rate."""
    from cnnlab.data.wav import read_wav

    samples, _ = read_wav(path, sample_rate=int(preprocess["sample_rate"]))
    length = int(preprocess["length"])
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(samples))] = samples[:length]
    return torch.from_numpy(out)[None, None]


def read_signal(path: str | os.PathLike[str], preprocess: dict[str, Any]) -> torch.Tensor:
    """A recording -> its windows (n, 1, window), stepped by the training test stride."""
    window, stride = int(preprocess["window"]), int(preprocess.get("stride", preprocess["window"]))
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    suffix = Path(path).suffix.lower()
    if suffix in (".npz", ".mat"):
        from cnnlab.data.bearing import cwru_sample_rate, read_cwru, to_sample_rate

        signal = read_cwru(path, channel=str(preprocess.get("channel", "DE")))
        rate = int(preprocess.get("sample_rate", 0))
        if rate:  # CWRU's names say the rate (the normal baselines are 48 kHz)
            signal = to_sample_rate(signal, cwru_sample_rate(Path(path).name), rate)
    elif suffix == ".npy":
        signal = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    elif suffix == ".wav":
        from cnnlab.data.wav import read_wav

        signal, _ = read_wav(path, sample_rate=preprocess.get("sample_rate"))
    else:
        raise DataFormatError(
            f"{path}: expected a recording as .npz, .mat, .npy or .wav, received {suffix or 'none'}"
        )
    if len(signal) < window:
        raise DataFormatError(
            f"{path}: the recording has {len(signal)} samples, shorter than the model's window "
            f"of {window}"
        )
    starts = range(0, len(signal) - window + 1, stride)
    windows = np.stack([signal[s : s + window] for s in starts]).astype(np.float32)
    return torch.from_numpy(windows)[:, None, :]
