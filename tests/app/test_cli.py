"""The `cnnlab` command end to end, and how it treats bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.app.cli import main
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.checkpoint import load_checkpoint

QUICK = [
    "--model-args", "{widths: [8, 16], blocks: [1, 1]}",
    "--batch-size", "32", "--augment", "none", "--no-progress", "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def bars_npz(bars: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "bars.npz"
    np.savez(
        path, x_train=bars.x_train.numpy(), y_train=bars.y_train.numpy(),
        x_test=bars.x_test.numpy(), y_test=bars.y_test.numpy(), classes=np.array(bars.classes),
    )  # fmt: skip
    return path


def data_args(npz: Path) -> list[str]:
    return ["--dataset", "npz", "--dataset-args", json.dumps({"path": str(npz)})]


@pytest.fixture(scope="module")
def trained(bars_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    code = main(["train", *data_args(bars_npz), *QUICK, "--epochs", "3", "--runs-dir", str(runs)])
    assert code == 0
    return runs / "demo"


def test_train_writes_the_run_folder(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = {p.name for p in trained.iterdir()}
    assert {"config.yaml", "config.json", "model.safetensors", "checkpoint.safetensors",
            "history.csv", "metrics.json", "report.html"} <= names  # fmt: skip
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.9 and metrics["epochs"] == 3
    assert main(["evaluate", str(trained)]) == 0
    result = json.loads(capsys.readouterr().out)
    # Same model, same TTA; at most one of the 96 images may flip on float noise.
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=0.011)


def test_predict_reports_bad_files_and_predicts_the_rest(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "bar.png"
    img = np.zeros((12, 12), np.uint8)
    img[:, 5] = 255  # a vertical bar
    Image.fromarray(img).save(good)
    empty = tmp_path / "empty.png"
    empty.touch()
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    files = [good, missing, empty, truncated, text]
    code = main(["predict", str(trained), *map(str, files), "--top-k", "2"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{good}\n  vertical" in out
    assert f"{missing}: file not found" in err
    assert f"{empty}: file is empty" in err
    assert f"{truncated}: damaged image" in err
    assert f"{text}: not an image" in err


def test_unknown_names_exit_2_with_the_valid_ones(
    bars_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *data_args(bars_npz), "--model", "resnet9000", "--fast-dev-run"]) == 2
    assert "unknown model 'resnet9000'; expected one of:" in capsys.readouterr().err
    assert main(["train", "--dataset", "imagenet-22k", "--fast-dev-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'imagenet-22k'" in err and "fashion-mnist" in err


def test_model_that_does_not_fit_exits_2(
    bars_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", *data_args(bars_npz), "--model", "keras_cifar",
                 "--model-args", "{input_size: 32}", "--fast-dev-run"])  # fmt: skip
    assert code == 2
    assert "(2, 1, 12, 12)" in capsys.readouterr().err


def test_yaml_config_with_overrides(bars_npz: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"epochs: 5\nlr: 0.02\nname: yaml\nruns_dir: {tmp_path}\n")
    assert (
        main(["train", "--config", str(config), *data_args(bars_npz), *QUICK, "--epochs", "1"]) == 0
    )
    resolved = (tmp_path / "yaml" / "config.yaml").read_text()
    assert "epochs: 1\n" in resolved and "lr: 0.02\n" in resolved
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    assert main(["train", "--config", str(bad)]) == 2


def test_listing_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "1,250,858" in out
    assert main(["models", "resnet50"]) == 0
    assert re.search(r"25,557,032 +4,089\.2 ", capsys.readouterr().out)  # torchvision: 4.09 GMACs
    assert main(["summary", "lenet5"]) == 0
    assert "120x1x1" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    assert "fashion-mnist" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "predict", "summary", "models", "datasets"]
)
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cnnlab" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_and_resume_continues(bars_npz: Path, tmp_path: Path) -> None:
    # --no-autotune: a 1000-epoch run would first time torch.compile (a minute or more).
    args = [sys.executable, "-m", "cnnlab.app.cli", "train", *data_args(bars_npz), *QUICK,
            "--runs-dir", str(tmp_path), "--schedule", "constant", "--lr", "0.02",
            "--no-autotune"]  # fmt: skip
    # A shell's background job starts with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(
        [*args, "--epochs", "1000"], stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    checkpoint = tmp_path / "demo" / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint within 120 s"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    done = load_checkpoint(checkpoint)["epoch"]
    assert 1 <= done < 1000
    env = {**os.environ}
    resumed = subprocess.run(
        [*args, "--epochs", str(done + 2), "--resume"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {checkpoint} after epoch {done}" in resumed.stdout
    assert load_checkpoint(checkpoint)["epoch"] == done + 2


def test_explain_prints_the_seed_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "pool"]) == 0
    out = capsys.readouterr().out
    assert "y[0,0] = max(1, 2, 3, 0) = 3" in out and "  3 5\n  2 4" in out
    assert main(["explain", "conv", "--image", "1 2 3; 4 5 6", "--kernel", "1 1; 1 1"]) == 0
    assert "y[0,1] = 2*1 + 3*1 + 5*1 + 6*1 = 16" in capsys.readouterr().out
    assert main(["explain", "backprop"]) == 0
    assert "Kernel flipped 180°" in capsys.readouterr().out
    assert main(["explain", "conv", "--image", "1 2; x 3"]) == 2
    assert "Expected numbers only" in capsys.readouterr().err


def test_reference_engine_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import cnnlab.reference.examples as ex\n"
        "print(ex.max_pool_example().tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[3.0, 5.0], [2.0, 4.0]]"


def test_inspect_commands_write_pngs(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "bar.png"
    pixels = np.zeros((12, 12), np.uint8)
    pixels[:, 5] = 255
    Image.fromarray(pixels).save(image)
    runs = {
        "filters": ["filters", str(trained)],
        "features": ["features", str(trained), str(image), "--layer", "features.0"],
        "gradcam": ["attribution", str(trained), str(image)],
        "occlusion": ["attribution", str(trained), str(image), "--method", "occlusion"],
        "guided": ["attribution", str(trained), str(image), "--method", "guided"],
        "maximise": ["maximise", str(trained), "--class", "0", "--steps", "5"],
        "dream": ["dream", str(trained), str(image), "--layer", "features.4", "--steps", "2"],
        "confusion": ["confusion", str(trained)],
        "embedding": ["embedding", str(trained), "--method", "pca", "--images", "50"],
        "style": ["style", str(trained), str(image), str(image), "--steps", "3", "--size", "16"],
    }
    for name, args in runs.items():
        out = tmp_path / f"{name}.png"
        assert main(["inspect", *args, "-o", str(out)]) == 0, name
        with Image.open(out) as picture:
            assert picture.size[0] > 0 and picture.format == "PNG"
    printed = capsys.readouterr().out
    assert "wrote" in printed
    assert "precision  recall" in printed and "most confused" in printed
    assert re.search(r"style loss \S+ -> \S+ \(", printed)
    assert main(["inspect", "confusion", "resnet_mini"]) == 2
    assert "needs a saved model folder" in capsys.readouterr().err
    assert main(["inspect", "features", str(trained), str(image), "--layer", "nope"]) == 2
    assert "received ['nope']" in capsys.readouterr().err


def test_layer_views_of_an_ensemble_show_member_0_unless_told(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    single = cnnlab.load(trained)
    config = cnnlab.models.saved.config_of(single)
    members = [single, cnnlab.load(trained)]
    with torch.no_grad():  # member 1 differs, so which member was drawn shows
        next(members[1].parameters()).mul_(-1)
    folder = cnnlab.save(
        cnnlab.Ensemble(members), tmp_path / "ens", classes=config["classes"],
        input_shape=tuple(config["input_shape"]), mean=config["mean"], std=config["std"],
        extra={k: config[k] for k in ("dataset", "dataset_args") if k in config},
    )  # fmt: skip
    by_member = {}
    for name, folder_or_run in (("ens", folder), ("single", trained)):
        out = tmp_path / f"{name}.png"
        assert main(["inspect", "filters", str(folder_or_run), "-o", str(out)]) == 0
        with Image.open(out) as picture:
            by_member[name] = np.asarray(picture)
    printed = capsys.readouterr().out
    assert f"{folder} is an ensemble of 2 models: showing member 0" in printed
    assert np.array_equal(by_member["ens"], by_member["single"])  # member 0's filters
    # A member's own layer name keeps the ensemble and picks that member's layer.
    out = tmp_path / "m1.png"
    args = ["inspect", "filters", str(folder), "--layer", "members.1.features.0", "-o", str(out)]
    assert main(args) == 0
    assert "showing member 0" not in capsys.readouterr().out
    with Image.open(out) as picture:
        assert not np.array_equal(np.asarray(picture), by_member["single"])
    assert main(["inspect", "embedding", str(folder), "--method", "pca", "--images", "20",
                 "-o", str(tmp_path / "emb.png")]) == 0  # fmt: skip
    assert "showing member 0" in capsys.readouterr().out


def test_report_command_rewrites_the_page(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = trained / "report.html"
    page.unlink()
    assert main(["report", str(trained), "--max-images", "2"]) == 0
    assert f"report: {page}" in capsys.readouterr().out
    html = page.read_text()
    assert 'id="grad-cam"' in html and html.count("data:image/png;base64,") >= 8
    assert main(["report", str(trained.parent / "missing")]) == 1


def test_models_lists_one_task(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.app.cli import main

    assert main(["models", "--task", "segment"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["deeplab", "fcn32s", "fcn8s", "pspnet", "segnet", "unet"]


def test_train_evaluate_and_report_a_keypoints_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    args = [
        "train", "--dataset", "faces", "--dataset-args", "{train_size: 64, test_size: 16}",
        "--model", "keypoints_heatmap", "--epochs", "1", "--batch-size", "16",
        "--runs-dir", str(tmp_path), "--name", "kp", "--no-progress", "--threads", "1",
        "--label-smoothing", "0",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "kp" / "metrics.json").read_text())
    assert metrics["task"] == "keypoints"  # the dataset's own task
    assert f"test rmse px {metrics['test_rmse_px']:.4f} on 16 images" in out
    assert main(["evaluate", str(tmp_path / "kp")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rmse_px"] == pytest.approx(metrics["test_rmse_px"], rel=1e-4)
    assert "Predicted keypoints" in (tmp_path / "kp" / "report.html").read_text()
