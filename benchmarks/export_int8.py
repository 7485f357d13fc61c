"""int8 for CPU inference, measured: a saved run exported to ONNX, quantised (static QDQ,
calibrated on 512 training images), against fp32 PyTorch and fp32 onnxruntime.

Accuracy on the run's whole test split, one forward pass each (no TTA, as the exported
graph has none; the PyTorch figure with the run's TTA is printed beside). Speed at batch
1 and batch 64 on the test images: images per second, ``--threads`` threads for every
side, the three sides alternating within each of ``--repeats`` rounds, median (min-max).

    python benchmarks/export_int8.py runs/demo --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cnnlab import data as datasets
from cnnlab.core.cpu import cpu_kind
from cnnlab.core.records import require_record
from cnnlab.engine.export import OnnxRunner, export, quantize_int8, wrap
from cnnlab.engine.predictor import evaluate_model
from cnnlab.models.saved import load


def accuracy(run: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    right = 0
    for i in range(0, len(x), 500):
        right += int((run(x[i : i + 500]).argmax(1) == y[i : i + 500]).sum())
    return right / len(x)


def speed(run: Any, x: torch.Tensor, batch: int, seconds: float = 2.0) -> float:
    """Images per second of ``run`` on batches of ``batch`` test images, after a warm-up."""
    batches = [x[i : i + batch] for i in range(0, min(len(x), 64 * batch), batch)]
    run(batches[0])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for b in batches:
            run(b)
            done += len(b)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.run_dir)
    record = require_record(model)
    data = datasets.load(record.dataset or "", **(record.dataset_args or {}))
    x, y = data.x_test, data.targets_test["label"]
    wrapped, _ = wrap(model)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export(model, Path(tmp) / "model.onnx")
        int8 = quantize_int8(model, fp32, Path(tmp) / "model.int8.onnx", 512)
        sides: dict[str, Any] = {
            "torch fp32": lambda b: wrapped(b),
            "onnxruntime fp32": OnnxRunner(fp32, args.threads),
            "onnxruntime int8": OnnxRunner(int8, args.threads),
        }
        sizes = {"fp32 onnx": fp32.stat().st_size, "int8 onnx": int8.stat().st_size}
        with torch.no_grad():
            acc = {name: accuracy(run, x, y) for name, run in sides.items()}
            tta = evaluate_model(model, x, data.targets_test)["accuracy"]
            rates: dict[str, dict[int, list[float]]] = {n: {1: [], 64: []} for n in sides}
            for r in range(args.repeats):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for batch in (1, 64):
                    for name in order:
                        rates[name][batch].append(speed(sides[name], x, batch))
    print(f"{cpu_kind()}, {args.threads} threads; {args.run_dir} on {len(x)} test images")
    print(f"PyTorch with the run's TTA ({record.tta}): {tta:.2%}; sizes {sizes}")
    base = {b: statistics.median(rates["torch fp32"][b]) for b in (1, 64)}
    for name in sides:
        cells = []
        for b in (1, 64):
            v = rates[name][b]
            cells.append(f"batch {b}: {statistics.median(v):.0f} img/s ({min(v):.0f}-{max(v):.0f}, "
                         f"{statistics.median(v) / base[b]:.2f}x torch)")  # fmt: skip
        print(
            f"{name:>17}: accuracy {acc[name]:.2%} ({100 * (acc[name] - acc['torch fp32']):+.2f} pt); "
            + "; ".join(cells)
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"accuracy": acc, "tta": tta, "rates": rates, "sizes": sizes}, indent=1)
        )


if __name__ == "__main__":
    main()
