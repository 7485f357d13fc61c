"""`cnnlab serve`'s API: predictions against cnnlab predict, every bad upload its status,
the body and pixel limits, the queue (429) and deadline (504), and what /explain reports."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="cnnlab serve needs the serve extra (make install)")
from fastapi.testclient import TestClient

from cnnlab.app.cli import build_parser
from cnnlab.app.serve import Limits, asgi_app
from cnnlab.app.serve_batch import Batcher, DeadlineExceeded, QueueFull
from cnnlab.engine.predictor import predict_files
from cnnlab.inspect.summary import summary
from cnnlab.models.saved import load


@pytest.fixture(scope="module")
def client(served_run: Path) -> Any:
    with TestClient(asgi_app(served_run)) as c:
        yield c


@pytest.fixture(scope="module")
def digit(client: Any) -> np.ndarray:
    """A test image (28, 28) uint8 of the run's dataset."""
    png = client.get("/samples/0.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(png.content)))


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def probs(client: Any, body: bytes, **headers: str) -> list[float]:
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["probabilities"]


def test_predict_equals_cnnlab_predict(
    client: Any, served_run: Path, digit: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "digit.png"
    path.write_bytes(encode(Image.fromarray(digit)))
    want = predict_files(served_run, [str(path)], top_k=3)[0].top
    raw = client.post("/predict?top_k=3", content=path.read_bytes())
    form = client.post("/predict?top_k=3", files={"file": ("digit.png", path.read_bytes())})
    for r in (raw, form):
        assert r.status_code == 200
        got = [(row["class"], row["probability"]) for row in r.json()["top"]]
        assert [c for c, _ in got] == [c for c, _ in want]
        np.testing.assert_allclose([p for _, p in got], [p for _, p in want], atol=1e-4)
    assert raw.json()["input"] == {"size": [28, 28], "format": "PNG", "mode": "L"}


def huge_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of width x height whose header is real and whose data is all zeros."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_bad_uploads_each_get_their_status(client: Any, digit: np.ndarray) -> None:
    jpeg = encode(Image.fromarray(digit), "JPEG", quality=95)
    bomb = huge_png(20_000, 20_000)
    assert len(bomb) < 100_000  # small on disk, 400 megapixels when decoded
    cases = {
        "empty": (b"", 400, "empty"),
        "text named .png": (b"hello, I am not an image\n" * 4, 415, "not an image"),
        "truncated JPEG": (jpeg[: len(jpeg) // 2], 400, "truncated"),
        "20,000 x 20,000 PNG": (bomb, 413, "400000000 pixels"),
        "TIFF": (encode(Image.fromarray(digit), "TIFF"), 415, "TIFF"),
    }
    for name, (body, status, words) in cases.items():
        r = client.post("/predict", files={"file": ("x.png", body, "image/png")})
        assert r.status_code == status, (name, r.text)
        assert words in r.json()["error"] and r.json()["status"] == status, name
    one = client.post("/predict", content=encode(Image.new("L", (1, 1), 255)))
    assert one.status_code == 200 and one.json()["input"]["size"] == [1, 1]
    assert client.get("/health").json()["status"] == "ok"  # none of them hurt the server


def test_modes_convert_as_a_person_sees_them(client: Any, digit: np.ndarray) -> None:
    plain = probs(client, encode(Image.fromarray(digit)))
    # 16-bit grey: the same picture at 16 bits is the same input, not clipped at 255
    wide = Image.fromarray(digit.astype(np.uint16) * 257)  # mode I;16
    np.testing.assert_allclose(probs(client, encode(wide)), plain, atol=1e-4)
    # RGBA, opaque: the RGB picture; transparent pixels are black (the digits' ground)
    rgba = Image.fromarray(digit).convert("RGBA")
    np.testing.assert_allclose(probs(client, encode(rgba)), plain, atol=1e-4)
    clear = np.dstack([np.full_like(digit, 255)] * 3 + [digit])  # white where the digit is
    np.testing.assert_allclose(
        probs(client, encode(Image.fromarray(clear, "RGBA"))), plain, atol=2e-3
    )
    # palette with transparency, CMYK, BMP, WebP (lossless), GIF's first frame
    palette = Image.fromarray(digit).convert("P")
    np.testing.assert_allclose(probs(client, encode(palette)), plain, atol=1e-4)
    cmyk = Image.fromarray(digit).convert("RGB").convert("CMYK")
    via_rgb = probs(client, encode(cmyk.convert("RGB")))
    np.testing.assert_allclose(probs(client, encode(cmyk, "JPEG", quality=100)), via_rgb, atol=0.05)
    for fmt, extra in (("BMP", {}), ("WEBP", {"lossless": True})):
        np.testing.assert_allclose(
            probs(client, encode(Image.fromarray(digit), fmt, **extra)), plain, atol=1e-4
        )
    frames = [Image.fromarray(digit).convert("P"), Image.new("P", digit.shape[::-1])]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(probs(client, gif.getvalue()), plain, atol=1e-4)


def test_exif_rotated_photo_predicts_as_the_upright_one(client: Any, digit: np.ndarray) -> None:
    upright = Image.fromarray(digit)
    stored = upright.rotate(90, expand=True)  # as a sideways camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    sideways = probs(client, encode(stored))
    rotated = probs(client, encode(stored, exif=exif.tobytes()))
    np.testing.assert_allclose(rotated, probs(client, encode(upright)), atol=1e-5)
    assert not np.allclose(sideways, rotated, atol=1e-3)  # the tag mattered


def test_body_limit_by_length_and_by_counted_chunks(served_run: Path, digit: np.ndarray) -> None:
    with TestClient(asgi_app(served_run, Limits(max_body=50_000))) as small:
        field = b"x" * 200_000
        r = small.post("/predict", files={"file": ("big.png", field, "image/png")})
        assert r.status_code == 413 and "limit is 50,000" in r.json()["error"]

        def chunks() -> Any:  # no Content-Length: a chunked body
            for _ in range(40):
                yield b"\x00" * 4096

        r = small.post("/predict", content=chunks())
        assert r.status_code == 413 and "passed 50,000 bytes" in r.json()["error"]
        ok = small.post("/predict", content=encode(Image.fromarray(digit)))
        assert ok.status_code == 200


def test_multipart_without_a_file_field_or_with_a_huge_text_field(client: Any) -> None:
    r = client.post("/predict", files={"note": (None, "no file")})
    assert r.status_code == 400 and "no file field" in r.json()["error"]
    r = client.post("/predict", files={"note": (None, "y" * 3_000_000)})
    assert r.status_code == 400 and "multipart" in r.json()["error"]


def test_deadline_gives_504(served_run: Path, digit: np.ndarray) -> None:
    with TestClient(asgi_app(served_run, Limits(timeout=1e-6))) as hurried:
        r = hurried.post("/predict", content=encode(Image.fromarray(digit)))
        assert r.status_code == 504 and "deadline" in r.json()["error"]


def test_batcher_batches_refuses_when_full_and_expires_late_items() -> None:
    seen: list[int] = []

    def run(items: Any) -> list[int]:
        seen.append(len(items))
        time.sleep(0.05)
        return [2 * i for i in items]

    async def scenario() -> None:
        batcher = Batcher(run, max_batch=4, max_delay=0.02, max_queue=6)
        batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit(i, timeout=5) for i in range(6)))
            assert results == [2 * i for i in range(6)] and max(seen) == 4 and sum(seen) == 6
            jobs = [asyncio.ensure_future(batcher.submit(i, timeout=5)) for i in range(20)]
            done = await asyncio.gather(*jobs, return_exceptions=True)
            full = [e for e in done if isinstance(e, QueueFull)]
            assert full and all(e.retry_after >= 1 for e in full)
            assert [d for d in done if not isinstance(d, QueueFull)] == [
                2 * i for i, d in enumerate(done) if not isinstance(d, QueueFull)
            ]
            with pytest.raises(DeadlineExceeded):
                await batcher.submit(99, timeout=0.001)
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_429_carries_retry_after(served_run: Path, digit: np.ndarray) -> None:
    app = asgi_app(served_run, Limits(max_queue=1, max_batch=1))
    body = encode(Image.fromarray(digit))

    async def flood() -> list[Any]:
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with (
            app_lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as c,
        ):
            return await asyncio.gather(*(c.post("/predict", content=body) for _ in range(24)))

    responses = asyncio.run(flood())
    codes = {r.status_code for r in responses}
    assert codes <= {200, 429} and 429 in codes and 200 in codes
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1 and "queue is full" in refused.json()["error"]


class app_lifespan:
    """Run an ASGI app's lifespan (startup/shutdown) around an httpx ASGITransport."""

    def __init__(self, app: Any) -> None:
        self.app, self.events = app, asyncio.Queue()  # type: ignore[var-annotated]

    async def __aenter__(self) -> None:
        self.sent: asyncio.Queue[Any] = asyncio.Queue()

        async def receive() -> Any:
            return await self.events.get()

        async def send(message: Any) -> None:
            await self.sent.put(message)

        self.task = asyncio.ensure_future(self.app({"type": "lifespan"}, receive, send))
        await self.events.put({"type": "lifespan.startup"})
        assert (await self.sent.get())["type"] == "lifespan.startup.complete"

    async def __aexit__(self, *exc: object) -> None:
        await self.events.put({"type": "lifespan.shutdown"})
        await self.sent.get()
        await self.task


def test_explain_views_and_the_receptive_field_of_a_plain_stack(
    client: Any, served_run: Path, digit: np.ndarray
) -> None:
    body = encode(Image.fromarray(digit))
    model = client.get("/model").json()
    rows = {r.name: r for r in summary(load(served_run), (1, 28, 28))}
    convs = [layer for layer in model["layers"] if layer["kind"] == "Conv2d"]
    assert len(convs) >= 2
    checked = 0
    for layer in convs:
        name, (_, h, w) = layer["name"], layer["output_shape"]
        assert layer["rf"] == rows[name].rf
        r = client.post(f"/explain?view=rf&layer={name}&y={h // 2}&x={w // 2}", content=body).json()
        (y0, y1), (x0, x1) = r["box"]
        inside = y0 > 0 and x0 > 0 and y1 < 27 and x1 < 27
        if inside:  # not clipped by the border: the textbook receptive field
            assert r["size"] == [rows[name].rf, rows[name].rf], name
            checked += 1
        a = r["arithmetic"]
        assert a["sum"] == pytest.approx(a["output"], abs=1e-3)
    assert checked >= 1
    maps = client.post(f"/explain?view=maps&layer={convs[0]['name']}", content=body).json()
    assert maps["shape"] == convs[0]["output_shape"] and len(maps["maps"]) == maps["shape"][0]
    filters = client.get(f"/filters?layer={convs[0]['name']}").json()
    assert filters["shape"][0] == convs[0]["output_shape"][0]
    cam = client.post("/explain?view=gradcam&cls=3", content=body).json()
    heat = torch.tensor(cam["heatmap"])
    assert heat.shape == (28, 28) and heat.min() >= 0 and heat.max() <= 1
    bad = client.post("/explain?view=maps&layer=nope", content=body)
    assert bad.status_code == 400 and "layer name" in bad.json()["error"]
    off = client.post(f"/explain?view=rf&layer={convs[0]['name']}&y=999&x=0", content=body)
    assert off.status_code == 400 and "outside" in off.json()["error"]


def test_model_health_history_docs_and_the_default_host(client: Any) -> None:
    model = client.get("/model").json()
    assert model["task"] == "classify" and model["classes"][3] == "3"
    assert client.get("/health").json()["model_loaded"] is True
    assert len(client.get("/history").json()["rows"]) == 3
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert "/explain" in client.get("/docs").text
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name in ("app.js", "app.css"):  # nothing fetched from elsewhere: works offline
        assert not re.search(r"https?://", client.get(f"/static/{name}").text), name
    assert not re.search(r"https?://", page.text)
    args = build_parser().parse_args(["serve", "runs/demo"])
    assert args.host == "127.0.0.1" and args.port == 8000


def test_detector_and_ensemble_runs_are_served(tiny_scenes: Any, tmp_path: Path) -> None:
    from cnnlab.engine.config import TrainConfig
    from cnnlab.runs import run_training

    small = {
        "channels": 16,
        "groups": 4,
        "backbone_args": {"widths": [8, 16, 16], "blocks": [1, 1, 1]},
    }
    runs = {
        "det": {"model": "fcos", "task": "detect", "model_args": small, "ensemble": 1},
        "ens": {"model": "resnet_mini", "task": "classify", "model_args": {"widths": [8, 16], "blocks": [1, 1]},
                "ensemble": 2},
    }  # fmt: skip
    data = tiny_scenes
    for name, values in runs.items():
        config = TrainConfig(
            name=name, runs_dir=str(tmp_path), epochs=1, batch_size=32, progress=False, report=False,
            autotune=False, threads=1, tta=False, **values,
        )  # fmt: skip
        if name == "ens":  # a classifier of the scenes' first item class
            data = dataclasses.replace(
                tiny_scenes, y_train=tiny_scenes.targets_train["labels"].argmax(1),
                y_test=tiny_scenes.targets_test["labels"].argmax(1), task="classify",
                targets_train={"label": tiny_scenes.targets_train["labels"].argmax(1)},
                targets_test={"label": tiny_scenes.targets_test["labels"].argmax(1)},
            )  # fmt: skip
        run_training(config, data=data)
    image = encode(Image.fromarray(tiny_scenes.x_test[0, 0].numpy()))
    with TestClient(asgi_app(tmp_path / "det")) as c:
        r = c.post("/predict", content=image).json()
        assert (
            r["task"] == "detect" and "boxes" in r["pictures"] and isinstance(r["detections"], list)
        )
        assert c.get("/model").json()["grad_cam"] is False
    with TestClient(asgi_app(tmp_path / "ens")) as c:
        model = c.get("/model").json()
        assert model["ensemble"] == 2 and model["layers"][0]["name"] == "features.0"
        assert len(c.post("/predict", content=image).json()["top"]) == 3
        maps = c.post("/explain?view=maps&layer=features.0", content=image)
        assert maps.status_code == 200
