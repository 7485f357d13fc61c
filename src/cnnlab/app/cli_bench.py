"""`cnnlab bench`: the command line of cnnlab.engine.bench (peak FLOP/s, training share)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.core.errors import ConfigError
from cnnlab.engine.bench import __doc__ as BENCH_DOC
from cnnlab.engine.bench import bench, format_bench


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'1x28x28' or '1,28,28' -> (1, 28, 28); ConfigError naming what was received."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"Expected --input CxHxW or C,H,W with three positive ints, e.g. 1x28x28; "
            f"received {text!r}"
        )
    return shape[0], shape[1], shape[2]


def cmd_bench(args: argparse.Namespace) -> int:
    shape = None if args.input_shape is None else parse_input_shape(args.input_shape)
    # Checked before the seconds of matmul timing, not after them.
    for flag, least in (("batch_size", 1), ("classes", 1), ("steps", 1), ("warmup", 0)):
        value = getattr(args, flag)
        if value is not None and value < least:
            raise ConfigError(f"Expected --{flag.replace('_', '-')} >= {least}, received {value}")
    result = bench(
        args.model, shape, args.batch_size, args.classes,
        steps=args.steps, warmup=args.warmup, threads=args.threads, bf16=args.bf16,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_bench(result))
    return 0


def add_bench_parser(sub: Any) -> None:
    """Register `cnnlab bench`."""
    p = sub.add_parser(
        "bench",
        help="matmul peak FLOP/s and a model's training throughput as a fraction of it",
        description=BENCH_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="registered model name (default: TrainConfig's, resnet_mini)")
    p.add_argument(
        "--input", dest="input_shape", help="CxHxW or C,H,W (default: 1x28x28, Fashion-MNIST)"
    )
    p.add_argument("--batch-size", type=int, help="images per step (default: 128)")
    p.add_argument("--classes", type=int, help="num_classes of the model (default: 10)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="train under bf16 autocast (what the trainer's tuner picks on AMX CPUs)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_bench)
