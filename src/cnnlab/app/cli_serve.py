"""`cnnlab serve RUN_DIR`: the model's page and JSON API on a local web server."""

from __future__ import annotations

import argparse
from typing import Any


def add_serve_parser(sub: Any) -> None:
    from cnnlab.app.serve_images import DEFAULT_MAX_PIXELS

    p = sub.add_parser(
        "serve",
        help="a web page that opens up a saved model (predictions, layers, feature maps, "
        "filters, Grad-CAM, receptive fields, training curves) and its JSON API",
    )
    p.add_argument("run_dir", help="a saved model folder, e.g. runs/demo")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-body", type=int, default=10 * 2**20, help="bytes per request body")
    p.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="pixels per image (header)"
    )
    p.add_argument("--max-batch", type=int, default=32, help="images per forward pass (1: off)")
    p.add_argument("--max-delay", type=float, default=0.005, help="seconds a batch waits to fill")
    p.add_argument("--max-queue", type=int, default=256, help="waiting requests before 429")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request before 504")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from cnnlab.app.serve import Limits, serve
    except ImportError as e:
        raise SystemExit(
            f"error: cnnlab serve needs FastAPI and uvicorn ({e}); pip install 'cnnlab[serve]'"
        ) from None
    limits = Limits(
        max_body=args.max_body, max_pixels=args.max_pixels, max_batch=args.max_batch,
        max_delay=args.max_delay, max_queue=args.max_queue, timeout=args.timeout,
    )  # fmt: skip
    serve(args.run_dir, host=args.host, port=args.port, limits=limits)
    return 0
