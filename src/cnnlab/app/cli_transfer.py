"""`cnnlab lr-find`: the learning-rate range test for a training config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_lr_find_parser(sub: Any) -> None:
    from cnnlab.app.cli import _add_config_flags

    p = sub.add_parser(
        "lr-find",
        help="Smith's learning-rate range test: loss against an exponentially rising rate, "
        "a suggested rate and a plot (the model is left untouched)",
    )
    p.add_argument("--config", help="YAML file of TrainConfig keys")
    p.add_argument("--recipe", help="start from a named recipe (see `cnnlab recipes`)")
    p.add_argument("--start", type=float, default=1e-6, help="first rate (default 1e-6)")
    p.add_argument("--end", type=float, default=10.0, help="last rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="batches in the sweep (default 100)")
    p.add_argument("--output", "-o", default="lr_find.png", help="where the plot goes")
    p.add_argument("--json", help="also write the sweep here")
    _add_config_flags(p)
    p.set_defaults(func=cmd_lr_find)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from cnnlab import data as datasets
    from cnnlab.app.cli import resolve_config
    from cnnlab.engine.trainer import Trainer
    from cnnlab.runs.run import build_model

    config = resolve_config(args)
    data = datasets.load(config.dataset, **config.dataset_args)
    print(
        f"lr-find: {config.model} on {config.dataset}, {config.optimizer}, batch {config.batch_size}"
    )
    trainer = Trainer(build_model(config, data), config)
    result = trainer.lr_find(data, start=args.start, end=args.end, steps=args.steps)
    plot = result.plot(args.output)
    end = "stopped when the loss diverged" if result.stopped_early else "reached the last rate"
    print(
        f"swept {result.lrs[0]:.2g} -> {result.lrs[-1]:.2g} over {len(result.lrs)} steps ({end})\n"
        f"suggested lr {result.suggestion:.3g} (steepest descent of the smoothed loss); "
        f"min/10 {result.min_over_10:.3g}\nplot: {plot}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    return 0
