"""fit_shallow: a network's features under scikit-learn's classifiers, as a saved model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

import cnnlab
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.transfer import extract_features, fit_shallow


@pytest.fixture(scope="module")
def body() -> torch.nn.Module:
    torch.manual_seed(0)
    model = cnnlab.create_model(
        "resnet_mini", num_classes=5, in_channels=1, widths=[8, 16], blocks=[1, 1]
    )
    cnnlab.core.records.record_of(model).mean = [0.1]  # type: ignore[attr-defined, union-attr]
    cnnlab.core.records.record_of(model).std = [0.3]  # type: ignore[attr-defined, union-attr]
    return model.eval()


def standardised(body: torch.nn.Module, data: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    stats = {"mean": [0.1], "std": [0.3]}
    f_train = extract_features(body, data.x_train, stats)
    f_test = extract_features(body, data.x_test, stats)
    mean, scale = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    return ((f_train - mean) / scale).numpy(), ((f_test - mean) / scale).numpy()


def test_logreg_matches_scikit_learn(body: torch.nn.Module, bars: ImageDataset) -> None:
    shallow = fit_shallow(body, bars, "logreg", log=lambda _: None)
    chosen = shallow.cnnlab_record.model_args["chosen"]  # type: ignore[union-attr]
    z_train, z_test = standardised(body, bars)
    oracle = LogisticRegression(C=chosen["C"], max_iter=2000).fit(z_train, bars.y_train.numpy())
    x = cnnlab.models.saved.preprocess(bars.x_test, {"mean": [0.1], "std": [0.3]})
    with torch.no_grad():
        probs = shallow(x).softmax(1).numpy()
    np.testing.assert_allclose(probs, oracle.predict_proba(z_test), atol=2e-5)


def test_svm_and_knn_match_scikit_learn(body: torch.nn.Module, bars: ImageDataset) -> None:
    z_train, z_test = standardised(body, bars)
    y = bars.y_train.numpy()
    x = cnnlab.models.saved.preprocess(bars.x_test, {"mean": [0.1], "std": [0.3]})
    for kind in ("svm", "knn"):
        shallow = fit_shallow(body, bars, kind, log=lambda _: None)
        chosen = shallow.cnnlab_record.model_args["chosen"]  # type: ignore[union-attr]
        oracle = (
            LinearSVC(C=chosen["C"], max_iter=5000, random_state=0)
            if kind == "svm"
            else KNeighborsClassifier(n_neighbors=chosen["n_neighbors"])
        ).fit(z_train, y)
        with torch.no_grad():
            out = shallow(x)
        agree = (out.argmax(1).numpy() == oracle.predict(z_test)).mean()
        assert agree >= 0.99, (kind, agree)  # k-NN distance ties may break differently
        if kind == "svm":
            np.testing.assert_allclose(out.numpy(), oracle.decision_function(z_test), atol=1e-4)


def test_the_pipeline_saves_loads_and_evaluates(
    body: torch.nn.Module, bars: ImageDataset, tmp_path: Path
) -> None:
    for kind in ("logreg", "knn"):
        shallow = fit_shallow(body, bars, kind, log=lambda _: None)
        folder = cnnlab.save(shallow, tmp_path / kind)
        assert json.loads((folder / "config.json").read_text())["architecture"] == "shallow"
        again = cnnlab.load(folder)
        x = cnnlab.models.saved.preprocess(bars.x_test[:8], {"mean": [0.1], "std": [0.3]})
        with torch.no_grad():
            assert torch.equal(again(x), shallow(x))
        assert not any(p.requires_grad for p in again.parameters())


def test_too_few_images_of_a_class_is_a_clear_error(
    body: torch.nn.Module, bars: ImageDataset
) -> None:
    one = ImageDataset(
        "few", bars.x_train[:3], torch.tensor([0, 1, 2]), bars.x_test, bars.y_test, bars.classes
    )
    with pytest.raises(ConfigError, match="at least 2 training images of every class"):
        fit_shallow(body, one, "logreg")
    with pytest.raises(ConfigError, match="classifier in"):
        fit_shallow(body, bars, "forest")
    with pytest.raises(ConfigError, match="no forward_features"):
        fit_shallow(torch.nn.Linear(2, 2), bars)


@pytest.mark.slow
def test_cli_trains_then_fits_a_shallow_classifier_on_its_features(tmp_path: Path) -> None:
    """`cnnlab train --weights RUN --shallow logreg` on real digits, end to end."""
    cli = [
        sys.executable,
        "-m",
        "cnnlab.app.cli",
        "train",
        "--runs-dir",
        str(tmp_path),
        "--no-progress",
    ]
    pre = [*cli, "--dataset", "digits", "--epochs", "2", "--name", "pre", "--no-report",
           "--model-args", "{widths: [8, 16], blocks: [1, 1]}", "--tta", "false"]  # fmt: skip
    subprocess.run(pre, check=True, capture_output=True)
    shallow = [*cli, "--weights", str(tmp_path / "pre"), "--shallow", "logreg", "--dataset",
               "digits", "--name", "sh", "--tta", "false"]  # fmt: skip
    out = subprocess.run(shallow, check=True, capture_output=True, text=True).stdout
    assert "fitting logreg on the features of" in out
    metrics = json.loads((tmp_path / "sh" / "metrics.json").read_text())
    assert metrics["shallow"] == "logreg" and metrics["test_accuracy"] > 0.5
    assert (tmp_path / "sh" / "report.html").exists()
    evaluated = subprocess.run(
        [sys.executable, "-m", "cnnlab.app.cli", "evaluate", str(tmp_path / "sh")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert f'"accuracy": {metrics["test_accuracy"]}' in evaluated  # the same model, reloaded
