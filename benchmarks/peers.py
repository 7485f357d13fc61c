"""Claim (issue 6): cnnlab trains the seed-000 network >=1.5x as fast as Keras (goal 2x)
at the same test accuracy (+-0.5 points), and at least as fast as a plain PyTorch loop.

Three peers train the same network (seed 000's Keras CIFAR example, on 28x28x1) on the
same Fashion-MNIST images with the same batch size, optimizer, epochs and threads:

    keras   Keras 3 on TensorFlow-CPU, as the seed writes it (benchmarks/peer_keras.py)
    torch   a hand-written PyTorch loop, NCHW fp32 eager (benchmarks/peer_torch.py)
    cnnlab  cnnlab's Trainer with its default speed settings (benchmarks/peer_cnnlab.py)

Each run is a fresh process; rounds rotate the order (K T C, T C K, C K T, ...) so
machine noise hits all alike. Images/second counts the training loop's epochs only
(not setup, evaluation or checkpoints); accuracy is on the 10k test images, no TTA.
This script installs nothing: `make bench` builds .venv-keras first.

    .venv/bin/python benchmarks/peers.py [--rounds 3] [--epochs 2] [--threads 2]
        [--optimizer adam|rmsprop] [--limit N] [--only torch,cnnlab] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Taken before anything imports cnnlab, which sets GOMP_SPINCOUNT for its own process:
# the peers run in the environment the user has, not in cnnlab's.
BASE_ENV = dict(os.environ)

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
KERAS_PYTHON = HERE.parent / ".venv-keras" / "bin" / "python"
WORKERS = {"keras": "peer_keras.py", "torch": "peer_torch.py", "cnnlab": "peer_cnnlab.py"}
TARGETS = {"keras": 1.5, "torch": 1.0}  # cnnlab's images/second over the peer's, at least
ACCURACY_POINTS = 0.5  # cnnlab's test accuracy within this of Keras's (percentage points)


def export_data(path: Path, limit: int | None) -> int:
    """Fashion-MNIST as uint8 arrays in one .npz that every worker reads; train size."""
    from cnnlab.data import load

    data = load("fashion-mnist")
    n = min(limit or len(data.x_train), len(data.x_train))
    np.savez(
        path, x_train=data.x_train[:n].numpy(), y_train=data.y_train[:n].numpy(),
        x_test=data.x_test.numpy(), y_test=data.y_test.numpy(),
    )  # fmt: skip
    return n


def run_worker(peer: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One training run in a fresh process; its JSON result line."""
    python = str(KERAS_PYTHON) if peer == "keras" else sys.executable
    command = [
        python, str(HERE / WORKERS[peer]), "--data", str(data), "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--optimizer", args.optimizer,
        "--threads", str(args.threads), "--seed", str(args.seed),
    ]  # fmt: skip
    if args.lr is not None:
        command += ["--lr", str(args.lr)]
    env = {**BASE_ENV, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise SystemExit(f"the {peer} worker failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rotated(peers: list[str], round_index: int) -> list[str]:
    k = round_index % len(peers)
    return peers[k:] + peers[:k]


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """cnnlab's images/second over each peer's, within one round."""
    if "cnnlab" not in results:
        return {}
    ours = results["cnnlab"]["images_per_second"]
    return {p: ours / r["images_per_second"] for p, r in results.items() if p != "cnnlab"}


def summarize(rounds: list[dict[str, Any]], peers: list[str]) -> dict[str, Any]:
    """Median, min and max of every peer's img/s and accuracy, and of every ratio."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    summary: dict[str, Any] = {}
    for peer in peers:
        runs = [r["results"][peer] for r in rounds]
        summary[peer] = {
            "images_per_second": spread([r["images_per_second"] for r in runs]),
            "test_accuracy": spread([r["test_accuracy"] for r in runs]),
            "train_seconds": spread([r["train_seconds"] for r in runs]),
            "fit_seconds": spread([r["fit_seconds"] for r in runs]),
        }
    for peer in rounds[0]["ratios"]:
        summary[f"cnnlab/{peer}"] = spread([r["ratios"][peer] for r in rounds])
    return summary


def verdict(summary: dict[str, Any]) -> list[str]:
    lines = []
    for peer, target in TARGETS.items():
        if f"cnnlab/{peer}" in summary:
            ratio = summary[f"cnnlab/{peer}"]["median"]
            ok = "PASS" if ratio >= target else "FAIL"
            lines.append(f"- {ok}: median cnnlab/{peer} {ratio:.2f}x (target >= {target}x)")
    if "cnnlab" in summary and "keras" in summary:
        diff = 100 * (
            summary["cnnlab"]["test_accuracy"]["median"]
            - summary["keras"]["test_accuracy"]["median"]
        )
        ok = "PASS" if abs(diff) <= ACCURACY_POINTS else "FAIL"
        lines.append(
            f"- {ok}: median accuracy cnnlab - keras {diff:+.2f} points "
            f"(target within +-{ACCURACY_POINTS})"
        )
    return lines


def markdown(rounds: list[dict[str, Any]], peers: list[str], summary: dict[str, Any]) -> str:
    pairs = list(rounds[0]["ratios"])
    head = ["round", "order"] + [f"{p} img/s" for p in peers] + [f"{p} acc" for p in peers]
    head += [f"cnnlab/{p}" for p in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rounds, 1):
        res = r["results"]
        cells = [str(i), " ".join(p[0].upper() for p in r["order"])]
        cells += [f"{res[p]['images_per_second']:.0f}" for p in peers]
        cells += [f"{100 * res[p]['test_accuracy']:.2f}%" for p in peers]
        cells += [f"{r['ratios'][p]:.2f}x" for p in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    for stat in ("median", "min", "max"):
        cells = [stat, ""]
        cells += [f"{summary[p]['images_per_second'][stat]:.0f}" for p in peers]
        cells += [f"{100 * summary[p]['test_accuracy'][stat]:.2f}%" for p in peers]
        cells += [f"{summary[f'cnnlab/{p}'][stat]:.2f}x" for p in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    # What the img/s leave out: fit()'s setup (and cnnlab's CPU tuning, when it runs).
    walls = [
        f"- {p}: training loop {summary[p]['train_seconds']['median']:.1f}s, "
        f"whole fit() {summary[p]['fit_seconds']['median']:.1f}s (medians)"
        for p in peers
    ]
    return "\n".join([*lines, "", *walls, "", *verdict(summary)])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="in all three peers")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--optimizer", choices=("rmsprop", "adam"), default="adam",
        help="adam (lr 1e-3): the issue's anchor figures; rmsprop (lr 1e-4): the seed's",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, default=None, help="default: per optimizer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images")
    parser.add_argument("--only", default=",".join(WORKERS), help="comma-separated peers")
    parser.add_argument("--json", type=Path, default=None, help="write every result here")
    args = parser.parse_args()
    args.peers = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(args.peers) - set(WORKERS))
    if unknown or not args.peers:
        parser.error(f"--only expects names from {', '.join(WORKERS)}, received {args.only!r}")
    if "keras" in args.peers and not KERAS_PYTHON.exists():
        parser.error(f"{KERAS_PYTHON} is missing: run `make bench` first (it builds .venv-keras)")
    return args


def main() -> None:
    args = parse_args()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fashion-mnist.npz"
        n_train = export_data(data, args.limit)
        for i in range(args.rounds):
            order = rotated(args.peers, i)
            results = {}
            for peer in order:
                started = time.perf_counter()
                results[peer] = run_worker(peer, data, args)
                print(
                    f"round {i + 1}/{args.rounds} {peer}: "
                    f"{results[peer]['images_per_second']:.0f} img/s, "
                    f"acc {results[peer]['test_accuracy']:.4f} "
                    f"({time.perf_counter() - started:.0f}s in all)",
                    file=sys.stderr,
                    flush=True,
                )
            rounds.append({"order": order, "results": results, "ratios": ratios(results)})
    summary = summarize(rounds, args.peers)
    print(
        f"Seed-000 network on Fashion-MNIST: {n_train} train images, {args.epochs} epochs, "
        f"batch {args.batch_size}, {args.optimizer}, {args.threads} threads\n"
    )
    print(markdown(rounds, args.peers, summary))
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        record = {"settings": {**settings, "train_images": n_train}, "rounds": rounds}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**record, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
