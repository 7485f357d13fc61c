"""`cnnlab serve RUN_DIR`: a page that opens up a trained model, and its JSON API.

FastAPI on uvicorn: typed routes, an OpenAPI schema for free, and Starlette's ASGI
middleware for the limits. The page is static files in ``cnnlab/app/static`` (no build
step, nothing fetched from elsewhere: it works offline).

Routes: ``GET /`` the page; ``POST /predict`` (raw image bytes or multipart field
``file``); ``POST /explain?view=maps|gradcam|rf`` (same body); ``GET /filters``;
``GET /model``; ``GET /health``; ``GET /samples`` and ``/samples/{i}.png`` (the run's
test images); ``GET /history`` (training curves, re-read on every call so a run still
training in the folder shows its progress); ``GET /openapi.json`` and ``/docs``.

Limits, each a :class:`Limits` field and a ``cnnlab serve`` option, each refusal a JSON
body ``{"error": ..., "status": ...}``: request bodies over ``max_body`` bytes, by
Content-Length or counted as a chunked body arrives (413); images over ``max_pixels``
by their header, before decoding (413); formats other than PNG, JPEG, WebP, BMP and GIF
(415); a full queue (429 with Retry-After); a request not answered within ``timeout``
seconds (504). The server binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import asyncio
import html
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.app.serve_batch import Batcher, DeadlineExceeded, QueueFull
from cnnlab.app.serve_explain import ServedModel, png_bytes
from cnnlab.app.serve_images import DEFAULT_MAX_PIXELS, UploadError, decode_upload
from cnnlab.core.errors import CnnlabError

STATIC = Path(__file__).parent / "static"
IMAGE_BODY = {
    "requestBody": {
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
        "required": True,
    }
}


@dataclass
class Limits:
    """What one request may cost (defaults suit a laptop serving one small model)."""

    max_body: int = 10 * 2**20  # bytes of one request body
    max_pixels: int = DEFAULT_MAX_PIXELS  # width x height, from the header
    max_batch: int = 32  # images per forward pass (1: no micro-batching)
    max_delay: float = 0.005  # seconds a batch waits to fill
    max_queue: int = 256  # requests waiting; more get 429
    timeout: float = 10.0  # seconds per request; later gets 504


class BodyTooLarge(Exception):
    pass


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_body`` bytes, by Content-Length up front
    and by counting the chunks of a body that declares none (Starlette has no total
    limit of its own); the count raises BodyTooLarge inside the route, answered 413."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            response = error(
                413, f"the body declares {declared.decode()} bytes; the limit is {self.max_body:,}"
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(f"the body passed {self.max_body:,} bytes, the limit")
            return message

        await self.app(scope, counted, send)


async def upload_bytes(request: Request) -> bytes:
    """The image bytes of a request: a multipart ``file`` field, or the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=2**20)
        except MultiPartException as e:
            raise UploadError(400, f"bad multipart body ({e.message})") from None
        file = form.get("file")
        if file is None or isinstance(file, str):
            raise UploadError(400, "the multipart body has no file field named 'file'")
        return await file.read()
    return await request.body()


def create_app(run_dir: str | os.PathLike[str], limits: Limits | None = None) -> FastAPI:
    """The app for one saved model folder (loaded now: a bad folder fails here)."""
    limits = limits or Limits()
    served = ServedModel(run_dir)
    batcher = Batcher(
        lambda items: served.predict(list(items)),
        limits.max_batch,
        limits.max_delay,
        limits.max_queue,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title=f"cnnlab: {Path(run_dir).name}", lifespan=lifespan, docs_url=None, redoc_url=None,
        description="A trained cnnlab model: predictions and views of what it computes.",
    )  # fmt: skip
    app.state.served, app.state.batcher, app.state.limits = served, batcher, limits

    @app.exception_handler(UploadError)
    async def _upload(_r: Request, e: UploadError) -> JSONResponse:
        return error(e.status, e.message)

    @app.exception_handler(BodyTooLarge)
    async def _large(_r: Request, e: BodyTooLarge) -> JSONResponse:
        return error(413, str(e))

    @app.exception_handler(QueueFull)
    async def _full(_r: Request, e: QueueFull) -> JSONResponse:
        return error(429, str(e), {"Retry-After": str(round(e.retry_after))})

    @app.exception_handler(DeadlineExceeded)
    async def _late(_r: Request, e: DeadlineExceeded) -> JSONResponse:
        return error(504, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        message = f"bad multipart body ({e.detail})" if e.status_code == 400 else str(e.detail)
        return error(e.status_code, message, dict(e.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']} (received {d.get('input')!r})"
            for d in e.errors()
        )
        return error(422, where)

    @app.exception_handler(CnnlabError)
    async def _bad(_r: Request, e: CnnlabError) -> JSONResponse:
        return error(400, str(e))

    async def on_model(fn: Any, *args: Any) -> Any:
        """Run a view on the model's thread, within the deadline."""
        future = asyncio.get_running_loop().run_in_executor(batcher.pool, fn, *args)
        try:
            return await asyncio.wait_for(future, limits.timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"no result within the {limits.timeout:g} s deadline") from None

    async def decoded(request: Request) -> Any:
        return decode_upload(await upload_bytes(request), served.input_shape, limits.max_pixels)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.post("/predict", openapi_extra=IMAGE_BODY, summary="Predict one image")
    async def predict(request: Request, top_k: int = 5) -> dict[str, Any]:
        image = await decoded(request)
        result: dict[str, Any] = await batcher.submit((image.image, image.size), limits.timeout)
        top = result.get("top")
        if top is not None:
            result = result | {"top": top[: max(1, top_k)]}
        return result | {
            "input": {"size": list(image.size), "format": image.format, "mode": image.mode}
        }

    @app.post(
        "/explain", openapi_extra=IMAGE_BODY, summary="Feature maps, Grad-CAM or a receptive field"
    )
    async def explain(
        request: Request, view: str, layer: str | None = None, cls: int | None = None,
        y: int = 0, x: int = 0, channel: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        image = (await decoded(request)).image
        if view == "maps" and layer is not None:
            return await on_model(served.feature_maps, image, layer)
        if view == "gradcam":
            return await on_model(served.grad_cam, image, cls, layer)
        if view == "rf" and layer is not None:
            return await on_model(served.receptive_field, image, layer, y, x, channel)
        raise UploadError(
            400,
            f"Expected view maps or rf with a layer, or gradcam; received view={view!r}, layer={layer!r}",
        )

    @app.get("/filters", summary="A conv layer's weights")
    async def filters(layer: str) -> dict[str, Any]:
        return await on_model(served.filters, layer)

    @app.get("/model", summary="The model's record and its layers")
    async def model() -> dict[str, Any]:
        return served.describe_model()

    @app.get("/health", summary="Loaded, and how busy")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_loaded": True,
            "queue_depth": batcher.depth,
            **batcher.stats.to_dict(),
        }

    @app.get("/samples", summary="The run's test images")
    async def samples() -> dict[str, Any]:
        try:
            _, labels = await on_model(served.samples)
        except (CnnlabError, OSError) as e:
            return {"items": [], "reason": str(e).splitlines()[0]}
        names = served.classes
        items = [
            {"index": i, "label": names[t] if 0 <= t < len(names) else None}
            for i, t in enumerate(labels)
        ]
        return {"items": items}

    @app.get("/samples/{index}.png", summary="One test image", response_class=Response)
    async def sample(index: int) -> Response:
        images, _ = await on_model(served.samples)
        if not 0 <= index < len(images):
            return error(404, f"Expected a sample index in [0, {len(images)}), received {index}")
        picture = images[index].permute(1, 2, 0).squeeze(-1).numpy()
        return Response(png_bytes(picture), media_type="image/png")

    @app.get("/history", summary="Training curves (history.csv rows)")
    async def history() -> dict[str, Any]:
        return {"rows": served.history()}

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        rows = []
        for path, methods in app.openapi()["paths"].items():
            for method, spec in methods.items():
                rows.append(f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                            f"<td>{html.escape(spec.get('summary', ''))}</td></tr>")  # fmt: skip
        body = "".join(rows)
        return HTMLResponse(
            f"<!doctype html><title>API</title><h1>{html.escape(app.title)}</h1>"
            f"<p>The full schema: <a href='/openapi.json'>/openapi.json</a></p><table>{body}</table>"
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def asgi_app(run_dir: str | os.PathLike[str], limits: Limits | None = None) -> ASGIApp:
    """The app wrapped in its body limit: what uvicorn serves."""
    limits = limits or Limits()
    return BodyLimit(create_app(run_dir, limits), limits.max_body)


def serve(
    run_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
) -> None:
    """Serve ``run_dir`` until interrupted."""
    import uvicorn

    app = asgi_app(run_dir, limits)
    print(f"cnnlab serve: {run_dir} at http://{host}:{port}/  (API docs: /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
