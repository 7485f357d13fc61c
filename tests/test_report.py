"""The HTML run report: one offline page with every section and valid inline PNGs."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.config import TrainConfig
from cnnlab.data.dataset import ImageDataset
from cnnlab.report import write_report
from cnnlab.train.run import run_training

SECTIONS = {
    "summary": False,
    "curves": True,
    "confusion": True,
    "mistakes": True,
    "filters": True,
    "feature-maps": True,
    "grad-cam": True,
    "embedding": True,
}  # id -> must hold a picture


class _Page(HTMLParser):
    """Collect the <h2> ids and, per section, the src of each <img>."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.images: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "h2":
            self.current = a.get("id") or ""
            self.images[self.current] = []
        elif tag == "img" and self.current is not None:
            self.images[self.current].append(a.get("src") or "")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, bars: ImageDataset) -> Iterator[Path]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(
            name="report",
            runs_dir=str(tmp_path_factory.mktemp("runs")),
            model="resnet_mini",
            model_args={"widths": [8, 16], "blocks": [1, 1]},
            epochs=2,
            batch_size=32,
            lr=1e-4,  # barely trained: the test set must hold mistakes to show
            augment="none",
            progress=False,
            threads=1,
        )
        run_training(config, data=bars)
        write_report(config.run_dir, max_images=3, data=bars)
        yield config.run_dir
    finally:
        torch.set_num_threads(threads)


def _page(run_dir: Path) -> tuple[str, _Page]:
    text = (run_dir / "report.html").read_text()
    page = _Page()
    page.feed(text)
    return text, page


def test_every_section_is_present(run_dir: Path) -> None:
    _, page = _page(run_dir)
    assert set(SECTIONS) <= set(page.images)


@pytest.mark.parametrize("section", [s for s, picture in SECTIONS.items() if picture])
def test_picture_sections_hold_valid_inline_pngs(run_dir: Path, section: str) -> None:
    _, page = _page(run_dir)
    sources = page.images[section]
    assert sources, f"no <img> in section {section}"
    prefix = "data:image/png;base64,"
    for src in sources:
        assert src.startswith(prefix)
        picture = Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :], validate=True)))
        assert picture.format == "PNG"
        picture.verify()


def test_grad_cam_shows_max_images(run_dir: Path) -> None:
    _, page = _page(run_dir)
    assert len(page.images["grad-cam"]) == 3


def test_page_is_offline_and_states_test_accuracy(run_dir: Path) -> None:
    text, _ = _page(run_dir)
    assert "http://" not in text
    assert "https://" not in text
    assert "<script" not in text
    accuracy = json.loads((run_dir / "metrics.json").read_text())["test_accuracy"]
    assert f"{accuracy:.4f}" in text


def test_rewriting_leaves_no_temp_files(run_dir: Path, bars: ImageDataset) -> None:
    before = set(run_dir.iterdir())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = write_report(run_dir, max_images=2, data=bars)
    finally:
        torch.set_num_threads(threads)
    assert path == run_dir / "report.html"
    assert set(run_dir.iterdir()) == before
    _, page = _page(run_dir)
    assert len(page.images["grad-cam"]) == 2
