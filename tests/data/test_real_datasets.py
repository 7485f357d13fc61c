"""The real datasets as `cnnlab.data.load` gives them: CWRU windows split by time, MR
cross-validation folds, FSDD's three splits and its mu-law codes for WaveNet.

The oracles read the shared files themselves (NumPy, SciPy, soundfile) and rebuild what
each loader should return."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import soundfile
import torch
from scipy.io import savemat
from scipy.signal import resample_poly

from cnnlab import data
from cnnlab.core.errors import ConfigError, DataFormatError
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.real_sources import CWRU_FILES, CWRU_MAT_NUMBERS, FSDD_SPEAKERS
from cnnlab.data.text import read_mr, tokenize

WINDOW, TRAIN_FRACTION, TRAIN_STRIDE, TEST_STRIDE = 2048, 0.7, 256, 2048  # cwru defaults
MR_SENTENCES = 10_662  # 5,331 negative + 5,331 positive
FSDD_LENGTH = 8000  # 1 s at 8 kHz

Once = Callable[[str, Callable[[], Any]], Any]


# --- CWRU ------------------------------------------------------------------------------------


@pytest.fixture
def cwru(shared_data: Path, once: Once) -> ImageDataset:
    return once("cwru", lambda: data.load("cwru"))


def cwru_signal(shared_data: Path, cls: str) -> np.ndarray:
    """Oracle: the class's drive-end recording at 12 kHz (the 48 kHz baseline resampled)."""
    name = CWRU_FILES[cls]
    with np.load(shared_data / "cwru" / name) as arrays:
        x = arrays["DE"].reshape(-1).astype(np.float32)
    return resample_poly(x, 1, 4).astype(np.float32) if "Normal" in name else x


def windows(x: np.ndarray, stride: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, WINDOW)[::stride]


def test_cwru_has_ten_classes_of_float_windows(cwru: ImageDataset) -> None:
    assert cwru.classes == list(CWRU_FILES) and len(cwru.classes) == 10
    for x, y in ((cwru.x_train, cwru.y_train), (cwru.x_test, cwru.y_test)):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, WINDOW)
        assert y.dtype == torch.int64 and len(y) == len(x)
        assert sorted(y.unique().tolist()) == list(range(10))
    assert (len(cwru.x_train), len(cwru.x_test)) == (3094, 161)  # the registered facts
    assert cwru.preprocess["kind"] == "signal" and cwru.preprocess["window"] == WINDOW


@pytest.mark.parametrize("cls", ["normal", "inner_014", "outer_021"])
def test_cwru_windows_come_from_disjoint_time_ranges(
    cwru: ImageDataset, shared_data: Path, cls: str
) -> None:
    k = cwru.classes.index(cls)
    train = cwru.x_train[cwru.y_train == k, 0].numpy()
    test = cwru.x_test[cwru.y_test == k, 0].numpy()
    # The same samples on both sides would be the leak a random split of windows makes.
    assert not {w.tobytes() for w in train} & {w.tobytes() for w in test}
    # Stronger: train windows tile the first 70 % of the recording, test windows the rest.
    signal = cwru_signal(shared_data, cls)
    cut = int(TRAIN_FRACTION * len(signal))
    np.testing.assert_allclose(train, windows(signal[:cut], TRAIN_STRIDE), atol=1e-6)
    np.testing.assert_allclose(test, windows(signal[cut:], TEST_STRIDE), atol=1e-6)


def test_cwru_normal_baseline_is_windowed_at_12_khz(cwru: ImageDataset) -> None:
    counts = np.bincount(cwru.y_train.numpy(), minlength=10)
    # 243,938 samples at 48 kHz are 60,985 at 12 kHz; windowed as they are they would give
    # (170,756 - 2048) // 256 + 1 = 660 train windows, twice a fault class's.
    n12 = math.ceil(243_938 / 4)
    assert counts[0] == (int(TRAIN_FRACTION * n12) - WINDOW) // TRAIN_STRIDE + 1 == 159
    assert 0.4 < counts[0] / counts[1:].mean() < 0.6
    test_counts = np.bincount(cwru.y_test.numpy(), minlength=10)
    assert test_counts[0] == (n12 - int(TRAIN_FRACTION * n12) - WINDOW) // TEST_STRIDE + 1


def write_mat_folder(shared_data: Path, folder: Path, skip: str | None = None) -> None:
    """CWRU's own layout: <number>.mat holding X<number>_DE_time (and _FE_time), shaped (n, 1)."""
    folder.mkdir()
    for cls, name in CWRU_FILES.items():
        if cls == skip:
            continue
        number = CWRU_MAT_NUMBERS[cls]
        with np.load(shared_data / "cwru" / name) as arrays:
            variables = {
                f"X{number:03d}_DE_time": arrays["DE"],
                f"X{number:03d}_FE_time": arrays["FE"],
            }
        savemat(folder / f"{number}.mat", variables)


def test_cwru_from_a_folder_of_mat_files_reads_the_same_task(
    cwru: ImageDataset, shared_data: Path, tmp_path: Path
) -> None:
    write_mat_folder(shared_data, tmp_path / "mat")
    mat = data.load("cwru", path=tmp_path / "mat")
    assert mat.classes == cwru.classes
    for a, b in ((mat.x_train, cwru.x_train), (mat.x_test, cwru.x_test)):
        torch.testing.assert_close(a, b)
    assert torch.equal(mat.y_train, cwru.y_train) and torch.equal(mat.y_test, cwru.y_test)
    assert str(tmp_path / "mat") in mat.source


def test_cwru_folder_missing_a_class_says_what_was_expected(
    shared_data: Path, tmp_path: Path
) -> None:
    write_mat_folder(shared_data, tmp_path / "mat", skip="outer_007")
    with pytest.raises(DataFormatError) as error:
        data.load("cwru", path=tmp_path / "mat")
    message = str(error.value)
    assert "'outer_007'" in message and "130.mat" in message
    assert "1797_OR@6_7_DE12.npz" in message and str(tmp_path / "mat") in message


def test_cwru_window_longer_than_a_recording_names_the_file(
    shared_data: Path, tmp_path: Path
) -> None:
    # The baseline's test part is the shortest: 30 % of 60,985 samples at 12 kHz.
    with pytest.raises(ConfigError, match=r"1797_Normal\.npz.*18296 samples.*window=20000"):
        data.load("cwru", window=20_000)
    write_mat_folder(shared_data, tmp_path / "mat")
    savemat(tmp_path / "mat" / "118.mat", {"X118_DE_time": np.zeros((3000, 1))})
    with pytest.raises(ConfigError, match=r"118\.mat.*3000 samples"):
        data.load("cwru", path=tmp_path / "mat")


# --- MR --------------------------------------------------------------------------------------


@pytest.fixture
def mr_folds(shared_data: Path, once: Once) -> list[ImageDataset]:
    return once("mr", lambda: [data.load("mr", fold=k) for k in range(10)])


@pytest.fixture
def mr_tokens(shared_data: Path, once: Once) -> list[list[str]]:
    """Oracle: every MR sentence, tokenized, negative file then positive."""
    texts, labels = once("mr-files", lambda: read_mr(shared_data / "mr"))
    assert len(texts) == MR_SENTENCES and labels.sum() == MR_SENTENCES // 2
    return once("mr-tokens", lambda: [tokenize(t) for t in texts])


def vocabulary(fold: ImageDataset) -> dict[str, int]:
    return {token: i for i, token in enumerate(fold.preprocess["vocabulary"]["tokens"])}


def row_keys(x: torch.Tensor) -> Counter[tuple[int, ...]]:
    """Each row's ids without the right padding, counted."""
    return Counter(tuple(t for t in row if t != 0) for row in x.tolist())


def encode(tokens: list[str], stoi: dict[str, int]) -> tuple[int, ...]:
    return tuple(stoi.get(t, 1) for t in tokens[:56])


def test_mr_preprocess_is_text_with_the_training_vocabulary(mr_folds: list[ImageDataset]) -> None:
    fold = mr_folds[0]
    assert fold.preprocess["kind"] == "text" and fold.preprocess["max_len"] == 56
    tokens = fold.preprocess["vocabulary"]["tokens"]
    assert tokens[:2] == ["<pad>", "<unk>"] and len(set(tokens)) == len(tokens)
    assert fold.x_train.dtype == torch.int64 and fold.x_train.shape[1:] == (56,)
    assert int(fold.x_train.max()) < len(tokens) and int(fold.x_test.max()) < len(tokens)
    assert fold.classes == ["negative", "positive"]


def test_mr_ten_folds_test_every_sentence_once(
    mr_folds: list[ImageDataset], mr_tokens: list[list[str]]
) -> None:
    sizes = [len(f.x_test) for f in mr_folds]
    assert sum(sizes) == MR_SENTENCES and set(sizes) <= {1066, 1067}
    assert all(len(f.x_train) + len(f.x_test) == MR_SENTENCES for f in mr_folds)
    # Which raw sentence is a test row in fold k: encode it with fold k's vocabulary and
    # look it up among the test rows (sentences that encode alike in a fold are skipped).
    times_tested = np.zeros(MR_SENTENCES, dtype=np.int64)
    identified = np.ones(MR_SENTENCES, dtype=bool)
    for fold in mr_folds:
        stoi = vocabulary(fold)
        keys = [encode(tokens, stoi) for tokens in mr_tokens]
        everywhere, tested = Counter(keys), row_keys(fold.x_test)
        assert not tested - everywhere  # every test row is some MR sentence
        identified &= np.array([everywhere[key] == 1 for key in keys])
        times_tested += np.array([key in tested for key in keys])
        labels = fold.y_test.numpy()
        assert abs(labels.mean() - 0.5) < 0.01  # stratified
    assert identified.sum() > 10_000
    assert (times_tested[identified] == 1).all()


@pytest.mark.parametrize("k", [0, 7])
def test_mr_vocabulary_leaves_out_words_only_in_the_test_fold(
    mr_folds: list[ImageDataset], mr_tokens: list[list[str]], k: int
) -> None:
    counts = Counter(t for tokens in mr_tokens for t in tokens)
    stoi = vocabulary(mr_folds[k])
    test_rows = row_keys(mr_folds[k].x_test)
    train_rows = row_keys(mr_folds[k].x_train)
    # A word said once in the whole corpus is in the vocabulary exactly when its
    # sentence trains.
    left_out = 0
    for tokens in mr_tokens:
        once = [t for t in tokens[:56] if counts[t] == 1]
        if not once:
            continue
        key = encode(tokens, stoi)
        if all(t in stoi for t in once):
            assert key in train_rows
        else:
            assert not any(t in stoi for t in once)
            assert key in test_rows and 1 in key  # the word reads as <unk>
            left_out += 1
    assert left_out > 100  # about a tenth of the sentences with such a word


@pytest.mark.parametrize(
    ("options", "received"),
    [({"fold": 10}, "fold=10, folds=10"), ({"fold": -1}, "fold=-1"), ({"folds": 1}, "folds=1")],
)
def test_mr_bad_fold_is_a_config_error(
    shared_data: Path, options: dict[str, int], received: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(received)):
        data.load("mr", **options)


# --- FSDD ------------------------------------------------------------------------------------


class Recording(NamedTuple):
    digest: str  # of the waveform as the loader should give it
    digit: int
    speaker: str
    number: int


def read_recordings(folder: Path) -> list[Recording]:
    """Oracle: every FSDD file read with soundfile, cut or padded to 1 s."""
    rows = []
    for path in sorted(folder.glob("*.wav")):
        digit, speaker, number = path.stem.split("_")
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == 8000 and samples.ndim == 1
        wave = np.zeros(FSDD_LENGTH, dtype=np.float32)
        wave[: min(len(samples), FSDD_LENGTH)] = samples[:FSDD_LENGTH]
        rows.append(Recording(digest(wave), int(digit), speaker, int(number)))
    return rows


@pytest.fixture
def fsdd_files(shared_data: Path, once: Once) -> list[Recording]:
    rows: list[Recording] = once(
        "fsdd-files", lambda: read_recordings(shared_data / "fsdd" / "recordings")
    )
    assert len(rows) == 3000 and len({r.digest for r in rows}) == 3000
    return rows


@pytest.fixture
def fsdd_official(shared_data: Path, once: Once) -> ImageDataset:
    return once("fsdd", lambda: data.load("fsdd"))


def digest(wave: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()


def recordings(x: torch.Tensor, y: torch.Tensor) -> Counter[tuple[str, int]]:
    """(waveform digest, label) of each row, counted."""
    return Counter(zip((digest(w) for w in x[:, 0].numpy()), y.tolist(), strict=True))


def expected(
    files: list[Recording], chosen: Callable[[Recording], bool]
) -> Counter[tuple[str, int]]:
    return Counter((r.digest, r.digit) for r in files if chosen(r))


def test_fsdd_official_split_tests_recordings_0_to_4(
    fsdd_official: ImageDataset, fsdd_files: list[Recording]
) -> None:
    d = fsdd_official
    assert (len(d.x_train), len(d.x_test)) == (2700, 300)
    assert d.x_train.dtype == torch.float32 and d.x_train.shape[1:] == (1, FSDD_LENGTH)
    assert d.classes == [str(k) for k in range(10)]
    assert d.preprocess == {"kind": "audio", "sample_rate": 8000, "length": FSDD_LENGTH}

    assert recordings(d.x_test, d.y_test) == expected(fsdd_files, lambda r: r.number < 5)
    assert recordings(d.x_train, d.y_train) == expected(fsdd_files, lambda r: r.number >= 5)


def test_fsdd_random_split_is_stratified_disjoint_and_seeded(
    fsdd_official: ImageDataset, fsdd_files: list[Recording]
) -> None:
    a = data.load("fsdd", split="random", test_fraction=0.2, seed=0)
    assert np.bincount(a.y_test.numpy()).tolist() == [60] * 10  # 20 % of each digit's 300
    test, train = recordings(a.x_test, a.y_test), recordings(a.x_train, a.y_train)
    assert not set(test) & set(train)
    assert test + train == expected(fsdd_files, lambda r: True)
    # Not the official split: random recordings, whatever their number.
    assert test != recordings(fsdd_official.x_test, fsdd_official.y_test)
    again = data.load("fsdd", split="random", test_fraction=0.2, seed=0)
    other = data.load("fsdd", split="random", test_fraction=0.2, seed=1)
    assert recordings(again.x_test, again.y_test) == test
    assert recordings(other.x_test, other.y_test) != test


@pytest.mark.parametrize("held", [["theo"], ["george", "lucas"]])
def test_fsdd_speakers_split_keeps_test_voices_out_of_training(
    fsdd_files: list[Recording], held: list[str]
) -> None:
    d = data.load("fsdd", split="speakers", test_speakers=held)
    speaker_of = {r.digest: r.speaker for r in fsdd_files}
    train_speakers = {speaker_of[digest(w)] for w in d.x_train[:, 0].numpy()}
    test_speakers = {speaker_of[digest(w)] for w in d.x_test[:, 0].numpy()}
    assert test_speakers == set(held) and not train_speakers & set(held)
    assert train_speakers == set(FSDD_SPEAKERS) - set(held)
    assert len(d.x_test) == 500 * len(held)  # 50 of each digit per speaker


@pytest.mark.parametrize("held", [["nobody"], [], list(FSDD_SPEAKERS)])
def test_fsdd_speakers_split_refuses_unknown_or_all_speakers(
    shared_data: Path, held: list[str]
) -> None:
    with pytest.raises(
        ConfigError, match=r"test_speakers=.*expected a non-empty proper subset.*theo"
    ):
        data.load("fsdd", split="speakers", test_speakers=held)


def test_fsdd_unknown_split_lists_the_splits(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"split='folds'.*official, random, speakers"):
        data.load("fsdd", split="folds")


def mu_law(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """Oracle: the 8-bit mu-law code of each sample (G.711's companding, float64)."""
    f = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.floor((f + 1) / 2 * mu + 0.5).astype(np.int64)


def test_fsdd_mulaw_inputs_are_the_digit_then_codes_and_targets_the_next_code(
    fsdd_official: ImageDataset,
) -> None:
    d = data.load("fsdd-mulaw")
    assert d.task == "generate"
    chunk = 4000
    assert d.x_train.dtype == torch.int64 and d.x_train.shape == (2700, chunk + 1)
    assert d.x_test.shape == (300, chunk + 1)
    target = d.targets_test["waveform"]
    assert target.dtype == torch.int64 and target.shape == (300, chunk)
    # Column 0 conditions on the digit; the same official split as "fsdd".
    assert torch.equal(d.x_test[:, 0], fsdd_official.y_test)
    assert torch.equal(d.x_train[:, 0], fsdd_official.y_train)
    # The target at t is the input at t + 1: inputs[:, 1 + t] = code t, targets[:, t] = code t+1.
    assert torch.equal(target[:, :-1], d.x_test[:, 2:])
    assert torch.equal(d.targets_train["waveform"][:, :-1], d.x_train[:, 2:])
    codes = mu_law(fsdd_official.x_test[:, 0, : chunk + 1].double().numpy())
    got = torch.cat([d.x_test[:, 1:], target[:, -1:]], dim=1).numpy()
    assert np.abs(got - codes).max() <= 1  # float32 vs float64 at a rounding edge
    assert (got == codes).mean() > 0.999
    assert got.min() >= 0 and got.max() <= 255


def test_fsdd_mulaw_unconditioned_has_no_digit_column(shared_data: Path) -> None:
    d = data.load("fsdd-mulaw", conditioned=False, chunk=100)
    assert d.x_train.shape == (2700, 100) and d.targets_train["waveform"].shape == (2700, 100)
    assert torch.equal(d.targets_train["waveform"][:, :-1], d.x_train[:, 1:])
