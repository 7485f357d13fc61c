"""One self-contained HTML report (inline PNGs and CSS) for a finished training run."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import nn

from cnnlab import data as datasets
from cnnlab.core.io import atomic_write_text
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.predictor import probabilities, task_of
from cnnlab.inspect import attribution, embedding, evaluation, visualize
from cnnlab.inspect.summary import format_summary, summary
from cnnlab.models.ensemble import Ensemble
from cnnlab.models.saved import config_of, load, preprocess
from cnnlab.runs import report_signals
from cnnlab.tasks import Task

EMBEDDING_IMAGES = 1000  # more points add nothing visible; t-SNE of 1000 takes ~5 s
SAMPLE_IMAGES = 32  # test images shown under the summary
WORST_MISTAKES = 16

CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 12px; }
img { image-rendering: pixelated; max-width: 100%; margin: 4px; }
figure { display: inline-block; margin: 4px; text-align: center; font-size: 12px; }
"""


@dataclass
class _Run:
    """Everything the sections read, loaded once."""

    run_dir: Path
    model: nn.Module
    model_config: dict[str, Any]
    classes: list[str]
    metrics: dict[str, Any]
    history: list[dict[str, str]]
    x_test: torch.Tensor  # uint8 images (N, C, H, W), float signals (N, C, L) or ids (N, L)
    targets: dict[str, torch.Tensor]  # the test targets, as the dataset holds them
    probs: torch.Tensor  # the task's scores: (N, K) class probabilities for a classifier
    inner: nn.Module  # whose layers the filter, feature-map and embedding sections show
    note: str  # says which model that is, for an ensemble; empty otherwise
    task: Task

    @property
    def y_test(self) -> torch.Tensor:
        """int64 (N,) class ids (classification runs)."""
        return self.targets["label"]


def _png_uri(array: np.ndarray, scale: int = 1) -> str:
    """A uint8 (H, W) or (H, W, 3) array as a base64 PNG data URI."""
    big = array.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _file_uri(draw: Callable[[Path], object]) -> str:
    """Let ``draw`` write a PNG into a temporary folder and return it as a data URI."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "picture.png"
        draw(path)
        payload = path.read_bytes()
    return "data:image/png;base64," + base64.b64encode(payload).decode("ascii")


def _figure_uri(fig: Any) -> str:
    """A matplotlib figure as a PNG data URI; the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="PNG", dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str, caption: str | None = None) -> str:
    tag = f'<img src="{uri}" alt="{html.escape(alt)}">'
    if caption is None:
        return tag
    return f"<figure>{tag}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table; floats are shown with three decimals."""

    def cell(v: Any) -> str:
        return html.escape(f"{v:.3f}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section><h2 id="{section_id}">{title}</h2>\n{body}</section>\n'


def _load_run(run_dir: Path, data: ImageDataset | None) -> _Run:
    """Read the run folder, the test split and the test-set probabilities."""
    model = load(run_dir)
    config = config_of(model)
    if data is None:
        data = datasets.load(config["dataset"], **(config.get("dataset_args") or {}))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history_path = run_dir / "history.csv"
    inner, note = model, ""
    if isinstance(model, Ensemble):  # its members are runs of their own; show the first
        inner = model.members[0]
        note = (
            f"<p>Layers of member-0, one of the {len(model.members)} models the "
            "ensemble averages; predictions are the ensemble's.</p>"
        )
        if not history_path.exists():
            history_path = run_dir / "member-0" / "history.csv"
    history_text = history_path.read_text() if history_path.exists() else ""
    history = list(csv.DictReader(io.StringIO(history_text)))
    classes = list(config.get("classes") or data.classes)
    with torch.no_grad():
        probs = probabilities(model, data.x_test)
    return _Run(
        run_dir, model, config, classes, metrics, history, data.x_test, data.targets_test,
        probs, inner, note, task_of(model),
    )  # fmt: skip


def _summary_section(run: _Run) -> str:
    shape = tuple(run.model_config.get("input_shape") or run.x_test.shape[1:])
    rows = summary(run.inner, shape)  # an ensemble's members share one layout: show one
    params = sum(p.numel() for p in run.model.parameters())
    m = run.metrics
    facts = [
        ["model", run.model_config.get("architecture", m.get("model", "?"))],
        ["parameters", f"{params:,}"],
        [f"test {run.task.metric}", f"{m.get(f'test_{run.task.metric}', float('nan')):.4f}"],
        ["test loss", f"{m.get('test_loss', float('nan')):.4f}"],
        ["training time (s)", f"{m.get('train_seconds', float('nan')):.1f}"],
        ["epochs", m.get("epochs", len(run.history))],
    ]
    table = _table(["", "value"], facts)
    layers = html.escape(format_summary(rows, run.inner))
    if run.x_test.dtype != torch.uint8:  # signals and sentences: their sections show them
        return _section("summary", "Summary", f"{table}{run.note}<pre>{layers}</pre>")
    n = min(SAMPLE_IMAGES, len(run.x_test))
    grid = visualize.image_grid(run.x_test[:n].float() / 255, ncols=16, normalize=None)
    caption = f"the first {n} test images"
    samples = _img(_png_uri(grid, scale=2), "test images", caption)
    return _section("summary", "Summary", f"{table}{samples}{run.note}<pre>{layers}</pre>")


def _column(run: _Run, name: str) -> list[float]:
    """One history column as floats; empty cells (no validation split) become NaN."""
    return [float(r[name]) if r.get(name) else float("nan") for r in run.history]


def _curves_section(run: _Run) -> str:
    if not run.history:
        return _section("curves", "Training curves", "<p>No history.csv in the run.</p>")
    epochs = _column(run, "epoch")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, metric in zip(axes[:2], ["loss", run.task.metric], strict=True):
        # A detector keeps no metric on its training batches: then only val is drawn.
        for split in ("train", "val"):
            values = _column(run, f"{split}_{metric}")
            if not all(np.isnan(values)):
                ax.plot(epochs, values, "o-", label=split)
        ax.set(xlabel="epoch", title=metric)
        if ax.lines:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {metric} per epoch\n(use val_split)", ha="center",
                    va="center", transform=ax.transAxes, color="grey")  # fmt: skip
    axes[2].plot(epochs, _column(run, "lr"), "o-")
    axes[2].set(xlabel="epoch", title="learning rate")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    return _section("curves", "Training curves", _img(_figure_uri(fig), "training curves"))


def _confusion_section(run: _Run) -> str:
    pred = run.probs.argmax(1)
    cm = evaluation.confusion_matrix(run.y_test, pred, len(run.classes))
    picture = _file_uri(lambda p: evaluation.confusion_png(cm, run.classes, p))
    report = evaluation.per_class_report(cm, run.classes)
    keys = ["class", "precision", "recall", "f1", "support"]
    per_class = _table(keys, [[r[k] for k in keys] for r in report])
    pairs = evaluation.most_confused(cm, run.classes)
    confused = _table(["true", "predicted", "count"], [list(p) for p in pairs])
    body = f"{_img(picture, 'confusion matrix')}{per_class}<h3>Most confused</h3>{confused}"
    return _section("confusion", "Confusion matrix", body)


def _mistakes_section(run: _Run) -> str:
    mistakes = evaluation.worst_mistakes(run.probs, run.y_test, k=WORST_MISTAKES)
    if not mistakes:
        return _section("mistakes", "Worst mistakes", "<p>No mistakes on the test set.</p>")
    picture = _file_uri(lambda p: evaluation.mistakes_grid(run.x_test, mistakes, p))
    rows = [
        [
            n + 1,
            run.classes[m["true"]],
            run.classes[m["pred"]],
            ", ".join(f"{run.classes[c]} {p:.2f}" for c, p in m["top3"]),
        ]
        for n, m in enumerate(mistakes)
    ]
    table = _table(["#", "true", "predicted", "top 3"], rows)
    return _section("mistakes", "Worst mistakes", _img(picture, "worst mistakes") + table)


def _filters_section(run: _Run) -> str:
    grid = visualize.filter_grid(run.inner)
    picture = _img(_png_uri(grid, scale=8), "first-layer filters")
    return _section("filters", "Filters", run.note + picture)


def _feature_maps_section(run: _Run) -> str:
    names = visualize.conv_names(run.inner)
    if not names:
        return _section("feature-maps", "Feature maps", "<p>The model has no Conv2d.</p>")
    layers = list(dict.fromkeys([names[0], names[-1]]))  # first and last conv, once each
    x = preprocess(run.x_test[:1], run.model_config)
    maps = visualize.feature_maps(run.inner, x, layers)
    image = _img(_png_uri(_as_picture(run.x_test[0]), scale=4), "input image", "input")
    figures = [
        _img(
            _png_uri(visualize.feature_map_grid(maps[n]), scale=3),
            n,
            f"{n} {tuple(maps[n].shape[1:])}",
        )
        for n in layers
    ]
    return _section("feature-maps", "Feature maps", run.note + image + "".join(figures))


def _as_picture(image: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) -> (H, W) or (H, W, 3) for Pillow."""
    array = image.numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _grad_cam_section(run: _Run, max_images: int) -> str:
    images = run.x_test[:max_images]
    # For an ensemble, grad_cam averages the members' maps for the ensemble's class.
    cams = attribution.grad_cam(run.model, preprocess(images, run.model_config))
    pred = run.probs[:max_images].argmax(1)
    figures = []
    for i in range(len(images)):
        picture = attribution.overlay(images[i], cams[i])
        caption = f"pred {run.classes[int(pred[i])]} / true {run.classes[int(run.y_test[i])]}"
        figures.append(_img(_png_uri(picture, scale=4), f"grad-cam {i}", caption))
    return _section("grad-cam", "Grad-CAM", "".join(figures))


def _embedding_section(run: _Run) -> str:
    n = min(EMBEDDING_IMAGES, len(run.x_test))
    x = preprocess(run.x_test[:n], run.model_config)
    features = embedding.penultimate_features(run.inner, x)
    labels = run.y_test[:n]
    figures = []
    methods: list[tuple[embedding.Method, str]] = [("pca", "PCA"), ("tsne", "t-SNE")]
    for method, name in methods:
        points = embedding.project(features, method)
        picture = _file_uri(partial(embedding.scatter_png, points, labels, run.classes))
        figures.append(_img(picture, f"{name} embedding", name))
    note = f"<p>Penultimate-layer features of {n} test images, coloured by true class.</p>"
    return _section("embedding", "Embedding", run.note + note + "".join(figures))


def write_report(
    run_dir: str | os.PathLike[str], *, max_images: int = 8, data: ImageDataset | None = None
) -> Path:
    """Write ``run_dir/report.html``: one offline HTML page describing a training run.

    Sections: summary, training curves, confusion matrix, worst mistakes, filters,
    feature maps, Grad-CAM and embedding. Pictures are inline base64 PNGs.

    Args:
        run_dir: a run folder written by ``cnnlab train``.
        max_images: test images shown with Grad-CAM.
        data: the dataset to evaluate on; None loads the one the saved model names
            (pass it for datasets that are not registered, e.g. in-memory ones).

    Returns:
        The path of the report, written atomically.
    """
    folder = Path(run_dir)
    run = _load_run(folder, data)
    kind = report_signals.kind_of(run)
    if kind is not None and run.task.name == "classify":
        sections = [
            _summary_section(run),
            _curves_section(run),
            _confusion_section(run),
            *report_signals.sections(run, kind),
        ]
    elif run.task.name == "classify":
        sections = [
            _summary_section(run),
            _curves_section(run),
            _confusion_section(run),
            _mistakes_section(run),
            _filters_section(run),
            _feature_maps_section(run),
            _grad_cam_section(run, max_images),
            _embedding_section(run),
        ]
    else:  # the task draws its own views of the predictions
        shown = run.task.report_sections(run.x_test, run.probs, run.targets, run.classes)
        task_html = "".join(
            _section(f"task-{i}", html.escape(title), _img(_png_uri(picture), title, caption))
            for i, (title, picture, caption) in enumerate(shown)
        )
        sections = [_summary_section(run), _curves_section(run), task_html]
        if kind is None:  # image models: what their layers learned
            sections += [_filters_section(run), _feature_maps_section(run)]
    title = html.escape(f"cnnlab report: {folder.name}")
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><h1>{title}</h1>\n{''.join(sections)}</body></html>\n"
    )
    path = folder / "report.html"
    atomic_write_text(path, page)
    return path
