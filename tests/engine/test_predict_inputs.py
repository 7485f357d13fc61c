"""Predictions from saved non-image models: CWRU recordings, WAV files and sentences in,
through `predict_files` and `cnnlab predict`, prepared as the run's record says.

Tiny runs (one epoch of two batches) on the real datasets; what is checked is the input
side: each file is read, resampled, windowed or tokenised as training was (the oracles
do it with NumPy, SciPy and soundfile), and a bad file is one error, not a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from scipy.signal import resample_poly

from cnnlab.app.cli import main
from cnnlab.data.wav import write_wav
from cnnlab.engine import inputs
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import Prediction, predict_files, probabilities
from cnnlab.models.saved import config_of, load
from cnnlab.runs.run import train_one

TOP_K = 3

Once = Callable[[str, Callable[[], Any]], Any]


def train_tiny(runs: Path, dataset: str, model: str, model_args: dict[str, Any]) -> Path:
    config = TrainConfig(
        name=f"{dataset}-{model}", runs_dir=str(runs), dataset=dataset, model=model,
        model_args=model_args, epochs=1, batch_size=32, limit_batches=2, lr=0.01,
        progress=False, threads=1, autotune=False, report=False,
    )  # fmt: skip
    train_one(config, log=lambda line: None)
    return config.run_dir


@pytest.fixture
def cwru_run(shared_data: Path, once: Once, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return once("cwru", lambda: train_tiny(runs, "cwru", "wdcnn", {"hidden": 16}))


@pytest.fixture
def fsdd_run(shared_data: Path, once: Once, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    small = {"widths": [4, 8], "n_mels": 16}
    return once("fsdd", lambda: train_tiny(runs, "fsdd", "spectrogram_cnn", small))


@pytest.fixture
def mr_run(shared_data: Path, once: Once, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    small = {"embed_dim": 8, "num_filters": 4}
    return once("mr", lambda: train_tiny(runs, "mr", "kim_cnn", small))


def expected_top(run: Path, x: torch.Tensor) -> list[tuple[str, float]]:
    """Oracle: the top classes of the mean class probabilities over the rows of ``x``."""
    model = load(run)
    classes = config_of(model)["classes"]
    p = probabilities(model, x).mean(0)
    values, indices = p.topk(min(TOP_K, len(classes)))
    return [(classes[k], v) for v, k in zip(values.tolist(), indices.tolist(), strict=True)]


def assert_top(result: Prediction, oracle: list[tuple[str, float]]) -> None:
    assert result.error is None, result.error
    assert [name for name, _ in result.top] == [name for name, _ in oracle]
    assert [p for _, p in result.top] == pytest.approx([p for _, p in oracle], abs=1e-5)


def by_path(results: list[Prediction]) -> dict[str, Prediction]:
    return {r.path: r for r in results}


# --- vibration recordings (CWRU, wdcnn) ------------------------------------------------------


def cwru_windows(signal: np.ndarray, window: int = 2048) -> torch.Tensor:
    """Oracle: every whole window, stepped by the window (the training test stride)."""
    starts = range(0, len(signal) - window + 1, window)
    return torch.from_numpy(np.stack([signal[s : s + window] for s in starts]))[:, None]


def de_channel(path: Path) -> np.ndarray:
    with np.load(path) as arrays:
        return arrays["DE"].reshape(-1).astype(np.float32)


def test_a_recording_is_scored_window_by_window_and_averaged(
    cwru_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    fault = shared_data / "cwru" / "1797_B_7_DE12.npz"
    normal = shared_data / "cwru" / "1797_Normal.npz"  # 48 kHz: resampled to 12 kHz first
    short = de_channel(fault)[:5000]
    np.save(tmp_path / "short.npy", short)
    results = predict_files(cwru_run, [str(fault), str(normal), str(tmp_path / "short.npy")])
    assert [r.path for r in results] == [str(fault), str(normal), str(tmp_path / "short.npy")]

    fault_windows = cwru_windows(de_channel(fault))
    normal_windows = cwru_windows(resample_poly(de_channel(normal), 1, 4).astype(np.float32))
    cases = [(fault_windows, 59), (normal_windows, 29), (cwru_windows(short), 2)]
    for result, (windows, count) in zip(results, cases, strict=True):
        assert len(windows) == count
        assert result.lines == [("windows averaged", str(count))]
        assert_top(result, expected_top(cwru_run, windows))


def test_a_wav_file_for_a_vibration_model_is_read_at_the_training_rate(
    cwru_run: Path, tmp_path: Path
) -> None:
    samples = 0.5 * np.sin(2 * np.pi * 500 * np.arange(6000) / 8000)
    write_wav(tmp_path / "probe.wav", samples, 8000)
    pcm = np.round(samples * 32768) / 32768
    at_12k = resample_poly(pcm, 3, 2).astype(np.float32)  # 9,000 samples: 4 windows
    (result,) = predict_files(cwru_run, [str(tmp_path / "probe.wav")])
    assert result.lines == [("windows averaged", "4")]
    windows = cwru_windows(at_12k)
    prepared = inputs.read_signal(tmp_path / "probe.wav", config_of(load(cwru_run))["preprocess"])
    torch.testing.assert_close(prepared, windows, atol=1e-4, rtol=0)
    assert_top(result, expected_top(cwru_run, prepared))


def test_bad_recordings_are_reported_one_by_one(cwru_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "fan_end_only.npz", FE=rng.standard_normal((5000, 1)))
    np.savez(tmp_path / "short.npz", DE=rng.standard_normal((1000, 1)))
    (tmp_path / "notes.txt").write_text("not a recording")
    good = tmp_path / "good.npy"
    np.save(good, rng.standard_normal(4096).astype(np.float32))
    names = ["missing.npy", "fan_end_only.npz", "short.npz", "notes.txt", "good.npy"]
    results = by_path(predict_files(cwru_run, [str(tmp_path / n) for n in names]))
    errors = {Path(path).name: r.error for path, r in results.items()}
    assert errors["missing.npy"] == "file not found"
    assert "no channel 'DE'" in errors["fan_end_only.npz"]
    assert "['FE']" in errors["fan_end_only.npz"]
    assert "1000 samples, shorter than the model's window of 2048" in errors["short.npz"]
    assert "notes.txt" in errors["notes.txt"] and ".npz, .mat, .npy or .wav" in errors["notes.txt"]
    assert errors["good.npy"] is None
    assert results[str(good)].lines == [("windows averaged", "2")]


@pytest.mark.parametrize("name", ["missing.npz", "missing.mat"])
def test_a_missing_npz_or_mat_recording_is_one_error(
    cwru_run: Path, tmp_path: Path, name: str
) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.zeros(2048, dtype=np.float32))
    results = predict_files(cwru_run, [str(tmp_path / name), str(good)])
    assert results[0].error == "file not found"
    assert results[1].error is None


# --- sound (FSDD, spectrogram_cnn) -----------------------------------------------------------


def one_second(samples: np.ndarray) -> torch.Tensor:
    """Oracle: cut or padded with silence to the training length, (1, 1, 8000)."""
    out = np.zeros(8000, dtype=np.float32)
    out[: min(8000, len(samples))] = samples[:8000]
    return torch.from_numpy(out)[None, None]


def test_wav_files_are_mixed_resampled_and_padded_like_training(
    fsdd_run: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(4800) / 8000
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))
    write_wav(tmp_path / "mono.wav", mono, 8000)
    stereo = 0.4 * rng.uniform(-1, 1, (9600, 2))  # 1.2 s: the end is cut
    soundfile.write(tmp_path / "stereo.wav", stereo, 8000, subtype="PCM_24")
    fast = 0.3 * np.sin(2 * np.pi * 700 * np.arange(12000) / 16000)  # 0.75 s at 16 kHz
    write_wav(tmp_path / "16k.wav", fast, 16000)

    files = [tmp_path / "mono.wav", tmp_path / "stereo.wav", tmp_path / "16k.wav"]
    results = predict_files(fsdd_run, [str(f) for f in files])
    stereo_read, _ = soundfile.read(tmp_path / "stereo.wav", dtype="float64")
    fast_pcm = np.round(fast * 32768) / 32768
    oracles = [
        one_second(np.round(mono * 32768) / 32768),
        one_second(stereo_read.mean(axis=1)),
        one_second(resample_poly(fast_pcm, 1, 2)),
    ]
    preprocess = config_of(load(fsdd_run))["preprocess"]
    assert preprocess == {"kind": "audio", "sample_rate": 8000, "length": 8000}
    for file, result, oracle in zip(files, results, oracles, strict=True):
        prepared = inputs.read_audio(file, preprocess)
        assert prepared.shape == (1, 1, 8000)
        torch.testing.assert_close(prepared, oracle, atol=1e-4, rtol=0)
        assert result.path == str(file) and result.lines == []  # one input, nothing averaged
        assert_top(result, expected_top(fsdd_run, prepared))
    # 24-bit samples are read to 24 bits, not 16.
    torch.testing.assert_close(
        inputs.read_audio(files[1], preprocess), oracles[1], atol=1e-6, rtol=0
    )


def test_bad_sound_files_are_reported_one_by_one(
    fsdd_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    (tmp_path / "notes.wav").write_text("this is text")
    write_wav(tmp_path / "ok.wav", np.zeros(100), 8000)
    items = [
        str(tmp_path / "missing.wav"),
        str(tmp_path / "notes.wav"),
        str(shared_data / "cwru" / "1797_B_7_DE12.npz"),  # not a WAV file
        str(tmp_path / "ok.wav"),
    ]
    results = predict_files(fsdd_run, items)
    assert [r.path for r in results] == items
    assert results[0].error == "file not found"
    assert "expected a RIFF/WAVE file" in (results[1].error or "")
    assert "1797_B_7_DE12.npz" in (results[2].error or "")
    assert "expected a RIFF/WAVE file" in (results[2].error or "")
    assert results[3].error is None and len(results[3].top) == TOP_K


# --- sentences (MR, kim_cnn) -----------------------------------------------------------------


def token_ids(run: Path, sentence: str) -> torch.Tensor:
    """Oracle for lower-case words separated by spaces: ids (1, 56), unknown words 1."""
    vocabulary = config_of(load(run))["preprocess"]["vocabulary"]["tokens"]
    stoi = {token: i for i, token in enumerate(vocabulary)}
    ids = torch.zeros(1, 56, dtype=torch.int64)
    words = sentence.split()
    ids[0, : len(words)] = torch.tensor([stoi.get(w, 1) for w in words])
    return ids


def test_a_sentence_is_tokenised_with_the_training_vocabulary(mr_run: Path) -> None:
    sentence = "a gorgeous , witty , seductive movie zzzunseenword"
    preprocess = config_of(load(mr_run))["preprocess"]
    ids = inputs.encode_text(sentence, preprocess)
    assert torch.equal(ids, token_ids(mr_run, sentence))
    assert 1 in ids[0].tolist()  # the made-up word is <unk>
    (result,) = predict_files(mr_run, [sentence], top_k=2)
    assert result.path == sentence and len(result.top) == 2
    assert {name for name, _ in result.top} == {"negative", "positive"}
    assert sum(p for _, p in result.top) == pytest.approx(1.0, abs=1e-5)
    assert_top(result, expected_top(mr_run, ids))


def test_a_text_file_gives_one_prediction_per_non_empty_line(mr_run: Path, tmp_path: Path) -> None:
    lines = ["a gorgeous , witty , seductive movie", "", "  ", "it 's a boring , dull mess"]
    path = tmp_path / "reviews.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = predict_files(mr_run, [str(path)])
    assert [r.path for r in results] == [f"{path}:1", f"{path}:4"]
    for result, line in zip(results, [lines[0], lines[3]], strict=True):
        assert_top(result, expected_top(mr_run, token_ids(mr_run, line)))


def test_an_unreadable_text_file_is_one_error(mr_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("a caf\xe9 review\n".encode("latin-1"))  # not UTF-8
    results = predict_files(mr_run, [str(path), "a fine film"])
    assert results[0].path == str(path) and "utf-8" in (results[0].error or "").lower()
    assert results[1].error is None and results[1].top


# --- the command line ------------------------------------------------------------------------


def test_cli_predict_recording_prints_the_window_count_and_lists_errors(
    cwru_run: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = shared_data / "cwru" / "1797_IR_7_DE12.npz"
    missing = tmp_path / "missing.npy"
    code = main(["predict", str(cwru_run), str(recording), str(missing), "--top-k", "2"])
    out, err = capsys.readouterr()
    assert code == 1  # one file failed
    lines = out.splitlines()
    assert lines[0] == str(recording)
    assert lines[3].split() == ["windows", "averaged", str(121_265 // 2048)]
    assert lines[4:] == [str(missing), "  (skipped: file not found)"]
    assert f"error: {missing}: file not found" in err


def test_cli_predict_sentences_as_json(mr_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", str(mr_run), "a great movie", "an awful movie", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [row["path"] for row in rows] == ["a great movie", "an awful movie"]
    for row in rows:
        assert row["error"] is None
        assert {name for name, _ in row["top"]} == {"negative", "positive"}


def test_cli_predict_wav(
    fsdd_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_wav(tmp_path / "digit.wav", 0.2 * np.sin(np.arange(6000) / 5), 8000)
    assert main(["predict", str(fsdd_run), str(tmp_path / "digit.wav")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(tmp_path / "digit.wav") and len(lines) == 1 + TOP_K
    assert all(line.split()[0] in [str(d) for d in range(10)] for line in lines[1:])
