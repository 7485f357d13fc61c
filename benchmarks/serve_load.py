"""Load on `cnnlab serve`, on loopback only, bounded in count and time.

Starts ``cnnlab serve RUN_DIR`` in a subprocess on 127.0.0.1, then sends ``--requests``
POST /predict requests (the run's own test images, as PNG bytes) from ``--concurrency``
client tasks (httpx, keep-alive connections) and records each request's status and
latency. Each round runs once with micro-batching (``--max-batch``, default 32) and once
with batch size 1, alternating which goes first; a fresh server per side and round.
After each side: GET /health must answer ``ok``, and its batch counters say how large
the batches really were.

Reports, per side, median over rounds: throughput (requests/s), p50/p95/p99 latency,
responses by status (only 200, 429 and 504 are acceptable), mean batch size; and the
throughput ratio batched / batch-1, computed within each round. The client shares the
machine with the server (2 vCPUs here), so absolute numbers understate a server alone.

    python benchmarks/serve_load.py runs/demo --requests 2000 --concurrency 32 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cnnlab.core.cpu import cpu_kind

ACCEPTABLE = {200, 429, 504}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(run_dir: str, max_batch: int, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cnnlab.app.cli", "serve", run_dir, "--port", str(port),
               "--max-batch", str(max_batch)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]


async def load(base: str, bodies: list[bytes], requests: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                try:
                    r = await client.post("/predict", content=bodies[i % len(bodies)])
                    code = r.status_code
                except httpx.HTTPError:
                    code = -1  # connection error: counted, never acceptable
                latencies.append(time.perf_counter() - started)
                codes[code] = codes.get(code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - began
        health = (await client.get("/health")).json()
    q = statistics.quantiles(latencies, n=100)
    return {"throughput": requests / wall, "p50_ms": 1000 * q[49], "p95_ms": 1000 * q[94],
            "p99_ms": 1000 * q[98], "codes": codes, "health": health, "wall_s": wall}  # fmt: skip


def side(
    run_dir: str, max_batch: int, bodies: list[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    server = start_server(run_dir, max_batch, port)
    try:
        return asyncio.run(
            load(f"http://127.0.0.1:{port}", bodies, args.requests, args.concurrency)
        )
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a saved model folder, e.g. runs/demo")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # the run's test images, as a user would upload them
    port = free_port()
    server = start_server(args.run_dir, 1, port)
    try:
        items = httpx.get(f"http://127.0.0.1:{port}/samples").json()["items"][:32]
        bodies = [
            httpx.get(f"http://127.0.0.1:{port}/samples/{i['index']}.png").content for i in items
        ]
    finally:
        server.terminate()
        server.wait(30)
    if not bodies:
        raise SystemExit("the run's dataset is not here: no test images to send")
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = (args.max_batch, 1) if r % 2 == 0 else (1, args.max_batch)
        result = {b: side(args.run_dir, b, bodies, args) for b in order}
        rounds.append(result)
        for b in order:
            x = result[b]
            print(json.dumps({"round": r, "max_batch": b, **{k: v for k, v in x.items() if k != "health"},
                              "mean_batch": x["health"]["mean_batch"]}), flush=True)  # fmt: skip
    print(f"\n{cpu_kind()}, {os.cpu_count()} CPUs; {args.requests} requests x {args.rounds} rounds at "
          f"concurrency {args.concurrency}, loopback; median over rounds (min-max)")  # fmt: skip
    for b in (args.max_batch, 1):
        rows = [r[b] for r in rounds]
        cells = []
        for key in ("throughput", "p50_ms", "p95_ms", "p99_ms"):
            v = [row[key] for row in rows]
            cells.append(f"{key} {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})")
        codes: dict[int, int] = {}
        for row in rows:
            for code, n in row["codes"].items():
                codes[code] = codes.get(code, 0) + n
        bad = {c: n for c, n in codes.items() if c not in ACCEPTABLE}
        healthy = all(row["health"]["status"] == "ok" for row in rows)
        batch = statistics.median(row["health"]["mean_batch"] for row in rows)
        print(f"max_batch {b:>3}: " + ", ".join(cells) + f", statuses {codes}, mean batch {batch:.1f}, "
              f"healthy after: {healthy}" + (f", UNACCEPTABLE {bad}" if bad else ""))  # fmt: skip
    gains = [r[args.max_batch]["throughput"] / r[1]["throughput"] for r in rounds]
    print(f"micro-batching throughput gain: {statistics.median(gains):.2f}x "
          f"(rounds: {', '.join(f'{g:.2f}' for g in gains)})")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"rounds": [{str(k): v for k, v in r.items()} for r in rounds]}, indent=1)
        )


if __name__ == "__main__":
    main()
