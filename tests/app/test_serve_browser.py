"""The serve page in a real browser: Playwright driving Debian's chromium (no download).

Upload a test image and see the right class on top; click a layer and see its maps
drawn (pixels read from a screenshot against the colours the page's scale gives the
API's numbers); click a map cell and see the receptive-field box where the backend
computed it; no console errors. Then the same page for a segmentation model.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="cnnlab serve needs the serve extra (make install)")
playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (make install)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (make test installs it)"
)

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from cnnlab.app.serve import asgi_app  # noqa: E402
from cnnlab.engine.config import TrainConfig  # noqa: E402

TOP = (252, 253, 191)  # the page's colour for a map's maximum (per-channel scale)
BOTTOM = (0, 0, 4)  # and for its minimum


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serving(run_dir: Path) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(asgi_app(run_dir), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def url(served_run: Path) -> Iterator[str]:
    yield from serving(served_run)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return page, errors


def screenshot(page: Any) -> tuple[np.ndarray, float, float]:
    """The whole page as pixels, and the scroll (x, y) to add to viewport coordinates
    (what bounding boxes are in)."""
    sx, sy = page.evaluate("[scrollX, scrollY]")
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    return np.asarray(shot).astype(int), sx, sy


def test_page_predicts_draws_maps_and_the_receptive_field(
    browser: Any, url: str, tmp_path: Path
) -> None:
    api = httpx.Client(base_url=url, timeout=30)
    samples = api.get("/samples").json()["items"]
    for item in samples:  # a test image the model gets right
        png = api.get(f"/samples/{item['index']}.png").content
        top = api.post("/predict", content=png).json()["top"][0]["class"]
        if top == item["label"]:
            break
    else:
        pytest.fail("the model got no test image right")
    path = tmp_path / "digit.png"
    path.write_bytes(png)
    page, errors = open_page(browser, url)
    page.set_input_files("#file", str(path))
    page.wait_for_function("document.querySelector('#topk tbody tr') !== null")
    assert page.inner_text("#topk tbody tr td") == item["label"]

    # 4. a layer's maps, checked on the screenshot
    model = api.get("/model").json()
    first = next(layer for layer in model["layers"] if layer["kind"] == "Conv2d")
    name = first["name"]
    page.click(f".layer[data-name='{name}']")
    page.wait_for_selector(f"#maps[data-layer='{name}']")
    maps = api.post(f"/explain?view=maps&layer={name}", content=png).json()
    canvas = page.query_selector("#maps canvas")
    box = canvas.bounding_box()
    _, h, w = maps["shape"]
    zoom = canvas.evaluate("c => c.clientWidth") / w  # CSS pixels per map cell
    border = (box["width"] - zoom * w) / 2
    shot, sx, sy = screenshot(page)
    box = canvas.bounding_box() | {}
    box["x"] += sx
    box["y"] += sy
    grid = np.array(maps["maps"][0])
    for value, colour in ((grid.max(), TOP), (grid.min(), BOTTOM)):
        y, x = np.argwhere(grid == value)[0]
        pixel = shot[
            int(box["y"] + border + (y + 0.5) * zoom), int(box["x"] + border + (x + 0.5) * zoom)
        ]
        assert np.abs(pixel - colour).max() <= 3, (value, pixel, colour)
    crop = shot[
        int(box["y"]) : int(box["y"] + box["height"]), int(box["x"]) : int(box["x"] + box["width"])
    ]
    assert len(np.unique(crop.reshape(-1, 3), axis=0)) > 10  # a picture, not a flat box

    # 6. click a cell: the box lands where the backend says
    cell = (h // 2, w // 3)
    # Playwright clicks at whole pixels of the padding box: aim inside the cell, off its edges
    canvas.click(position={"x": int((cell[1] + 0.5) * zoom), "y": int((cell[0] + 0.5) * zoom)})
    page.wait_for_selector("#rf-box:not([hidden])")
    field = api.post(
        f"/explain?view=rf&layer={name}&y={cell[0]}&x={cell[1]}&channel=0", content=png
    ).json()
    (y0, _), (x0, x1) = field["box"]
    assert f"cell={cell[0]},{cell[1]}" in page.url.replace("%2C", ","), page.url  # in the URL
    frame = page.query_selector("#input-wrap").bounding_box()
    drawn = page.query_selector("#rf-box").bounding_box()
    scale = frame["width"] / model["input_shape"][2]
    assert drawn["x"] - frame["x"] == pytest.approx(x0 * scale, abs=1)
    assert drawn["y"] - frame["y"] == pytest.approx(y0 * scale, abs=1)
    assert drawn["width"] == pytest.approx((x1 - x0 + 1) * scale, abs=1)
    shot, sx, sy = screenshot(page)
    edge = shot[int(sy + drawn["y"] + drawn["height"] / 2), int(sx + drawn["x"]) + 1]
    assert edge[0] > 200 and edge[1] < 80  # the red border, on the screenshot
    assert "Σ patch·kernel" in page.inner_text("#arithmetic")

    # 5. Grad-CAM for a class the user picks
    page.select_option("#cam-class", "3")
    page.click("#cam-go")
    page.wait_for_function("document.querySelector('#cam-note').textContent.includes('for 3')")
    assert errors == []


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cnnlab.runs import run_training

    runs = tmp_path_factory.mktemp("seg")
    config = TrainConfig(
        name="seg", runs_dir=str(runs), dataset="nuclei", task="segment", model="unet",
        model_args={"base_channels": 8, "depth": 2}, epochs=1, batch_size=32, progress=False, report=False,
        threads=2, tta=False,
    )  # fmt: skip
    try:
        run_training(config)
    except Exception as e:  # the stardist wheel is installed by make install
        pytest.skip(f"nuclei is not available: {e}")
    return runs / "seg"


def test_page_serves_a_segmentation_model(browser: Any, segment_run: Path) -> None:
    for url in serving(segment_run):
        page, errors = open_page(browser, url)
        page.click(".samples figure")
        page.wait_for_selector("#pictures img[alt='overlay']")
        assert page.query_selector("#gradcam-section").is_hidden()  # no class score to explain
        name = page.get_attribute(".layer.has-maps", "data-name")
        page.click(f".layer[data-name='{name}']")
        page.wait_for_selector(f"#maps[data-layer='{name}']")
        assert errors == []
