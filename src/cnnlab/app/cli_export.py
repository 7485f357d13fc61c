"""`cnnlab export RUN_DIR --format onnx|torch-export [--int8]`."""

from __future__ import annotations

import argparse
from typing import Any


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="the saved model as ONNX or a torch.export program, preprocessing inside the "
        "graph (uint8 images in), checked against PyTorch before it is kept",
    )
    p.add_argument("run_dir", help="a saved model folder, e.g. runs/demo")
    p.add_argument("--format", choices=["onnx", "torch-export"], default="onnx")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx: onnxruntime static QDQ quantisation, calibrated "
        "on the run's training images",
    )
    p.add_argument("--calibration", type=int, default=512, help="training images for --int8")
    p.add_argument("--output", "-o", help="file to write (default RUN_DIR/model.onnx or .pt2)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from cnnlab.engine.export import check_parity, default_path, export, quantize_int8
    from cnnlab.models.saved import load

    model = load(args.run_dir)
    path = export(model, args.output or default_path(args.run_dir, args.format), args.format)
    worst = check_parity(model, path, args.format)
    print(f"wrote {path} (+ {path.name}.json); largest difference from PyTorch {worst:.2e}")
    if args.int8:
        if args.format != "onnx":
            raise SystemExit("error: --int8 quantises the ONNX graph; use --format onnx")
        quantized = quantize_int8(
            model, path, default_path(args.run_dir, "onnx", int8=True), args.calibration
        )
        print(f"wrote {quantized} (int8, calibrated on {args.calibration} training images)")
    return 0
