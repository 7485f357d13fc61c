"""Regenerate docs/serve.png: `cnnlab serve RUN_DIR` in headless chromium, one test image
picked, a layer's maps shown and a cell's receptive field drawn.

    .venv/bin/python docs/serve_screenshot.py runs/demo docs/serve.png
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import httpx
from playwright.sync_api import sync_playwright


def main(run_dir: str, out: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cnnlab.app.cli", "serve", run_dir, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        layer = next(x["name"] for x in httpx.get(url + "/model").json()["layers"] if x["maps"])
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1500})
            page.goto(f"{url}/#sample=1&layer={layer}")
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_selector(f"#maps[data-layer='{layer}'] canvas")
            page.wait_for_function("document.querySelector('#topk tbody tr') !== null")
            canvas = page.query_selector("#maps canvas")
            box = canvas.bounding_box()
            canvas.click(position={"x": box["width"] * 0.55, "y": box["height"] * 0.45})
            page.wait_for_selector("#rf-box:not([hidden])")
            page.wait_for_timeout(300)
            page.screenshot(path=out, full_page=False)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
