"""`cnnlab summary` and `cnnlab models` for the signal, sound and text models: (C, L) and
(L,) inputs, WaveNet's receptive field formula, and a clear error for a wrong --input."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from cnnlab.app.cli import main
from cnnlab.models import create_model, model_info

NEW_MODELS = ["wdcnn", "resnet1d", "kim_cnn", "spectrogram_cnn", "m5", "wavenet"]


def params_of(name: str) -> int:
    shape = model_info(name).input_shape
    model = create_model(name, **({"in_channels": shape[0]} if len(shape) > 1 else {}))
    return sum(p.numel() for p in model.parameters())


def table(out: str) -> dict[str, list[str]]:
    """The summary's layer rows: name -> the other columns."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 8 and re.fullmatch(r"[A-Z]\w*", parts[1]):
            rows[parts[0]] = parts[1:]
    return rows


def test_summary_wavenet_prints_its_receptive_field_with_the_formula(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["summary", "wavenet"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("receptive field:")]
    assert len(lines) == 1
    # Two stacks of dilations 1..512 with kernel 2: (2 - 1) x (1 + 2 x 1023) + 1 = 2048.
    dilations = [2**i for i in range(10)] * 2
    assert lines[0] == (
        "receptive field: 2048 samples = (kernel_size - 1) x (1 + sum of dilations) + 1 "
        f"= 1 x (1 + {sum(dilations)}) + 1  (dilations {dilations})"
    )
    assert create_model("wavenet").receptive_field == 2048
    rows = table(out)
    assert rows["head.3"][-2] == "2048"  # the traced rf of the last layer agrees
    assert rows["embedding"][:2] == ["Embedding", "4096x32"]  # (L,) input: 4096 codes


def test_summary_kim_cnn_takes_token_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "kim_cnn"]) == 0
    out = capsys.readouterr().out
    assert f"total params: {params_of('kim_cnn'):,}" in out
    rows = table(out)
    assert rows["features.embedding"][:2] == ["Embedding", "56x300"]
    # Widths 3, 4 and 5 over 56 words: 54, 53 and 52 positions of 100 filters.
    shapes = [rows[f"features.convs.{i}"][1] for i in range(3)]
    assert shapes == ["100x54", "100x53", "100x52"]
    assert "receptive field:" not in out  # only causal nets print the formula
    assert main(["summary", "kim_cnn", "--input", "20"]) == 0
    assert table(capsys.readouterr().out)["features.convs.0"][1] == "100x18"


def test_summary_kim_cnn_receptive_field_is_each_filter_width(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["summary", "kim_cnn"]) == 0
    rows = table(capsys.readouterr().out)
    # Each parallel Conv1d reads the word vectors directly: its rf is its width in words.
    assert [rows[f"features.convs.{i}"][-2] for i in range(3)] == ["3", "4", "5"]


def test_summary_wdcnn_takes_a_signal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "wdcnn"]) == 0
    out = capsys.readouterr().out
    assert f"total params: {params_of('wdcnn'):,}" in out
    first = table(out)["features.0"]
    # WDCNN's wide first kernel: 64 taps, stride 16, over 2048 samples -> 128 steps.
    assert first[:2] == ["Conv1d", "16x128"] and first[-2:] == ["64", "16"]


def test_summary_of_a_signal_at_another_length(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet1d", "--input", "1,256"]) == 0
    out = capsys.readouterr().out
    assert f"total params: {params_of('resnet1d'):,}" in out
    conv = next(cols for name, cols in table(out).items() if cols[0] == "Conv1d")
    assert conv[1].endswith("x128")  # the stem halves 256 samples


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "kim_cnn", "--input", "1,2,3"], r"token ids \(B, L\).*\(1, 1, 2, 3\)"),
        (["summary", "wdcnn", "--input", "1,1024"], r"\(B, 1, 2048\), received \(1, 1, 1024\)"),
        (["summary", "wdcnn", "--input", "1,a"], r"C,L \(a signal\) or L \(token ids\)"),
        (["summary", "kim_cnn", "--input", "0"], r"received '0'"),
    ],
)
def test_summary_with_a_wrong_input_is_a_clear_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ")
    assert re.search(message, err), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def models_listing() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models"]) == 0
    return out.getvalue()


@pytest.mark.parametrize("name", NEW_MODELS)
def test_models_lists_the_new_models_with_their_size_and_input(
    models_listing: str, name: str
) -> None:
    rows = {line.split()[0]: line.split() for line in models_listing.splitlines()[1:]}
    assert name in rows
    row = rows[name]
    assert row[1] == f"{params_of(name):,}"
    assert row[3] == "x".join(map(str, model_info(name).input_shape))
    assert row[-1] == str(model_info(name).year)


def test_models_task_filter_lists_wavenet_for_generation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models", "--task", "generate"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "wavenet" in names and "wdcnn" not in names and "kim_cnn" not in names
