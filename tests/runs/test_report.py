"""The HTML run report: one offline page with every section and valid inline PNGs."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.config import TrainConfig
from cnnlab.runs import run_training
from cnnlab.runs.report import write_report

SECTIONS = {
    "summary": True,
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


# --- The page as a browser draws it -------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1200  # both browser runs lay the page out at this width, so boxes agree

# Appended to a copy of the page: after load, record each section's heading box and the
# boxes of its decoded images in the title, which --dump-dom prints.
PROBE = """<script>
addEventListener("load", () => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  const sections = [...document.querySelectorAll("section")].map((s) => {
    const h = s.querySelector("h2");
    const images = [...s.querySelectorAll("img")]
      .filter((i) => i.complete && i.naturalWidth > 0)
      .map((i) => ({box: box(i), src: i.src}));
    return {id: h.id, text: h.textContent, box: box(h), images: images};
  });
  document.title = JSON.stringify({height: document.documentElement.scrollHeight, sections});
});
</script>"""


def _chromium(tmp: Path, *args: str) -> str:
    assert CHROMIUM is not None
    # The flags keep a root, offline, headless Chromium from reaching for the network.
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _layout(run_dir: Path, tmp: Path) -> dict[str, Any]:
    probed = tmp / "probed.html"
    probed.write_text((run_dir / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(
        tmp,
        f"--window-size={WIDTH},900",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probed.as_uri(),
    )
    found = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert found, "no <title> in Chromium's DOM dump"
    layout: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return layout


def _crop(shot: np.ndarray, box: list[float]) -> np.ndarray:
    left, top, width, height = (round(v) for v in box)
    return shot[top : top + height, left : left + width]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    """Screenshot the page; every section's heading is drawn, and in every section at
    least one picture appears on screen as the image it encodes."""
    layout = _layout(run_dir, tmp_path)
    sections = {s["id"]: s for s in layout["sections"]}
    assert list(sections) == list(SECTIONS)
    height = int(layout["height"])
    assert 0 < height < 16000
    shot_path = tmp_path / "report.png"
    _chromium(
        tmp_path,
        f"--window-size={WIDTH},{height}",
        f"--screenshot={shot_path}",
        (run_dir / "report.html").as_uri(),
    )
    shot = np.asarray(Image.open(shot_path).convert("L"), dtype=np.float64)
    assert shot.shape == (height, WIDTH)
    for name, section in sections.items():
        heading = _crop(shot, section["box"])
        assert heading.size and (heading < 100).mean() > 0.01, f"heading of {name} not drawn"
        best = -1.0
        for image in section["images"]:
            drawn = _crop(shot, image["box"])
            if drawn.shape[0] < 4 or drawn.shape[1] < 4:
                continue
            encoded = image["src"].split(",", 1)[1]
            source = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("L")
            expected = np.asarray(
                source.resize((drawn.shape[1], drawn.shape[0]), Image.Resampling.NEAREST),
                dtype=np.float64,
            )
            if drawn.std() > 1 and expected.std() > 1:
                best = max(best, float(np.corrcoef(drawn.ravel(), expected.ravel())[0, 1]))
        assert best > 0.9, f"no picture of section {name} shows on screen (best r={best:.2f})"
