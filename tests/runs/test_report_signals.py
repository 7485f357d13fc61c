"""report.html of runs on signals, sound and sentences: Grad-CAM over the waveform or the
log-mel spectrogram, a Conv1d model's first-layer filters, the n-grams that decided each
sentence, and none of the image sections (mistake grids, feature maps, embeddings)."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cnnlab import data
from cnnlab.app.cli import main
from cnnlab.data.text import Vocabulary
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import probabilities
from cnnlab.models.saved import config_of, load
from cnnlab.runs.report_signals import CAM_EXAMPLES, NGRAM_EXAMPLES
from cnnlab.runs.run import train_one

SHARED = ["summary", "curves", "confusion"]  # every classifier's report opens with these
IMAGE_ONLY = ["mistakes", "feature-maps", "embedding"]  # grids and projections of images

Once = Callable[[str, Callable[[], Any]], Any]


def train_tiny(runs: Path, dataset: str, model: str, model_args: dict[str, Any]) -> Path:
    """One epoch of two batches; the run writes its report.html as `cnnlab train` does."""
    config = TrainConfig(
        name=f"{dataset}-{model}", runs_dir=str(runs), dataset=dataset, model=model,
        model_args=model_args, epochs=1, batch_size=32, limit_batches=2, lr=0.01,
        progress=False, threads=1, autotune=False, report=True,
    )  # fmt: skip
    train_one(config, log=lambda line: None)
    assert (config.run_dir / "report.html").is_file()
    return config.run_dir


RUNS = {
    "cwru": ("cwru", "wdcnn", {"hidden": 16}),
    "fsdd-spectrogram": ("fsdd", "spectrogram_cnn", {"widths": [4, 8], "n_mels": 16}),
    "fsdd-m5": ("fsdd", "m5", {"width": 4}),
    "mr": ("mr", "kim_cnn", {"embed_dim": 8, "num_filters": 4}),
}


@pytest.fixture
def run_of(
    shared_data: Path, once: Once, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """The run folder of one of RUNS, trained the first time it is asked for."""

    def get(key: str) -> Path:
        return once(key, lambda: train_tiny(tmp_path_factory.mktemp("runs"), *RUNS[key]))

    return get


def sections(page: str) -> dict[str, str]:
    """Section id -> its HTML, in page order."""
    found = re.findall(r'<section><h2 id="([^"]+)">[^<]*</h2>(.*?)</section>', page, re.S)
    return dict(found)


def pictures(section: str) -> dict[str, Image.Image]:
    """alt text -> the decoded inline PNG."""
    found = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)">', section)
    return {alt: Image.open(io.BytesIO(base64.b64decode(b64))) for b64, alt in found}


def assert_no_image_sections(page: str) -> None:
    shown = sections(page)
    assert not set(IMAGE_ONLY) & set(shown)
    assert 'alt="test images"' not in shown["summary"]  # the grid of sample images
    assert 'alt="first-layer filters"' not in page  # the image filter grid
    assert 'alt="input image"' not in page


def test_vibration_report_has_waveform_grad_cam_and_conv1d_filters(
    run_of: Callable[[str], Path],
) -> None:
    page = (run_of("cwru") / "report.html").read_text()
    shown = sections(page)
    assert list(shown) == [*SHARED, "grad-cam", "filters"]
    assert "over the waveform" in shown["grad-cam"]
    cams = pictures(shown["grad-cam"])
    assert list(cams) == [f"grad-cam {i}" for i in range(CAM_EXAMPLES)]
    assert all(p.width > 300 and p.height > 100 for p in cams.values())
    assert '<h2 id="filters">First-layer filters</h2>' in page
    assert list(pictures(shown["filters"])) == ["filters"]
    assert "magnitude response" in shown["filters"]
    params = sum(p.numel() for p in load(run_of("cwru")).parameters())
    assert f"<td>parameters</td><td>{params:,}</td>" in shown["summary"]
    assert "Conv1d" in shown["summary"]  # the layer table
    assert_no_image_sections(page)


def test_spectrogram_model_report_draws_grad_cam_on_the_log_mel_spectrogram(
    run_of: Callable[[str], Path],
) -> None:
    page = (run_of("fsdd-spectrogram") / "report.html").read_text()
    shown = sections(page)
    # No Conv1d in a log-mel CNN (its convolutions are 2-D): no filters section.
    assert list(shown) == [*SHARED, "grad-cam"]
    assert "over the log-mel spectrogram" in shown["grad-cam"]
    assert len(pictures(shown["grad-cam"])) == CAM_EXAMPLES
    assert_no_image_sections(page)


def test_waveform_audio_model_report_has_grad_cam_and_filters(
    run_of: Callable[[str], Path],
) -> None:
    page = (run_of("fsdd-m5") / "report.html").read_text()
    shown = sections(page)
    assert list(shown) == [*SHARED, "grad-cam", "filters"]
    assert "over the waveform" in shown["grad-cam"]
    # M5's first layer: 80 taps at 8 kHz.
    assert len(pictures(shown["filters"])) == 1
    assert_no_image_sections(page)


def table_rows(section: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", section, re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", r)] for r in rows]


def test_text_report_lists_the_ngrams_that_fired(run_of: Callable[[str], Path]) -> None:
    run = run_of("mr")
    page = (run / "report.html").read_text()
    shown = sections(page)
    assert list(shown) == [*SHARED, "ngrams"]
    assert '<h2 id="ngrams">What fired</h2>' in page
    header, *rows = table_rows(shown["ngrams"])
    assert header == ["sentence", "predicted", "true", "n-grams that fired (contribution)"]
    assert len(rows) == NGRAM_EXAMPLES
    # Oracle: the first test sentences of the same fold, decoded with the run's vocabulary.
    test = data.load("mr")
    model = load(run)
    vocab = Vocabulary.from_dict(config_of(model)["preprocess"]["vocabulary"])
    predicted = probabilities(model, test.x_test[: len(rows)]).argmax(1).tolist()
    fired_any = False
    for i, (sentence, pred, true, fired) in enumerate(rows):
        words = vocab.decode(test.x_test[i])
        assert sentence == " ".join(words)
        assert pred == test.classes[predicted[i]] and true == test.classes[int(test.y_test[i])]
        found = re.findall(r"“([^”]+)” ([+-]\d+\.\d\d)", fired)
        assert len(found) <= 3
        contributions = [float(c) for _, c in found]
        assert contributions == sorted(contributions, reverse=True)
        for ngram, _ in found:  # each n-gram is a run of words of its own sentence
            n = len(ngram.split())
            assert any(words[s : s + n] == ngram.split() for s in range(len(words)))
        fired_any |= bool(found)
    assert fired_any
    assert "grad-cam" not in shown and "filters" not in shown
    assert_no_image_sections(page)


def test_cli_report_rewrites_a_signal_report_from_the_run_folder(
    run_of: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_of("cwru")
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0  # loads "cwru" again, as the record names it
    assert capsys.readouterr().out.strip() == f"report: {run / 'report.html'}"
    shown = sections((run / "report.html").read_text())
    assert list(shown) == [*SHARED, "grad-cam", "filters"]
