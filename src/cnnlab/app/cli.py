"""The `cnnlab` command: train | evaluate | predict | summary | inspect | report | models |
datasets | explain | bench | generate."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.core.cpu import cpu_kind
from cnnlab.core.errors import CnnlabError, ConfigError, ShapeMismatchError, UnknownNameError
from cnnlab.engine.budget import format_duration, parse_duration
from cnnlab.engine.config import TrainConfig, read_yaml, yaml_value

USAGE_ERRORS = (UnknownNameError, ConfigError, ShapeMismatchError)  # exit code 2, like argparse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field; only flags given on the command line override."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("config overrides (any TrainConfig field)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else "{}"
        if hints[field.name] in (bool, bool | None):  # --x / --no-x; omitted = default
            group.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS, help=f"(default: {default})",
            )  # fmt: skip
        else:
            group.add_argument(
                flag, dest=field.name, type=yaml_value, default=argparse.SUPPRESS,
                metavar="VALUE", help=f"(default: {default!s})",
            )  # fmt: skip


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The config a command line asks for: recipe, then the YAML file, then flags."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    # Later wins: recipe, then the YAML file, then flags.
    values: dict[str, object] = {}
    if args.recipe:
        from cnnlab.engine.recipes import recipe_values

        values.update(recipe_values(args.recipe))
    from_file = read_yaml(args.config) if args.config else {}
    values.update(from_file)
    config = TrainConfig.from_dict({**values, **overrides})
    if "epochs" in overrides or "epochs" in from_file:
        config.check_epochs_or_budget()
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from cnnlab.runs import run_training

    config = resolve_config(args)
    length = f"{config.epochs} epochs"
    budget = parse_duration(config.time_budget)
    if budget is not None:
        length = f"a {format_duration(budget)} time budget"
    if config.shallow:
        print(
            f"fitting {config.shallow} on the features of {config.weights} for "
            f"{config.dataset} -> {config.run_dir}"
        )
    else:
        print(f"training {config.model} on {config.dataset} for {length} -> {config.run_dir}")
    print(f"cpu: {cpu_kind()}, {os.cpu_count()} cores")
    try:
        metrics = run_training(config, resume=args.resume)
    except KeyboardInterrupt:
        member = "member-*/" if config.ensemble > 1 else ""
        checkpoints = f"{config.run_dir}/{member}checkpoint.safetensors"
        print(
            f"\ninterrupted; the last complete epoch is in {checkpoints}"
            " — run the same command with --resume to continue",
            file=sys.stderr,
        )
        return 130
    from cnnlab.tasks import get_task

    metric = get_task(metrics.get("task", "classify")).metric
    value = metrics[f"test_{metric}"]
    shown = f"{value:.2%}" if metric == "accuracy" else f"{value:.4f}"
    print(
        f"test {metric.replace('_', ' ')} {shown} on {metrics['test_images']} images | "
        f"training time {metrics['train_seconds']:.0f} s{_how_long(metrics)} | "
        f"run: {metrics['run_dir']}"
    )
    if "report" in metrics:
        print(f"report: {metrics['report']}")
    return 0


def _how_long(metrics: dict[str, Any]) -> str:
    if "shallow" in metrics:
        return f" ({metrics['shallow']}: {metrics['chosen']})"
    return f" over {metrics['epochs']} epochs"


def cmd_recipes(args: argparse.Namespace) -> int:
    from cnnlab.engine.recipes import RECIPES

    for recipe in RECIPES.values():
        values = " ".join(f"{k}={v}" for k, v in recipe.values.items())
        print(f"{recipe.name}\n  {recipe.claim}\n  {values}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cnnlab.runs.report import write_report

    print(f"report: {write_report(args.run_dir, max_images=args.max_images)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnlab.engine.predictor import evaluate_model
    from cnnlab.models.saved import dataset_of, load

    model = load(args.model)
    name, data = dataset_of(model, args.dataset)
    result = evaluate_model(model, data.x_test, data.targets_test)
    if "map" in result and not args.json:  # a detector: the table COCO users read
        from cnnlab.tasks.coco_eval import format_table

        print(f"{name}: {result['n']} test images, loss {result['loss']:.4f}")
        print(format_table(result))
        return 0
    print(json.dumps({"dataset": name, **result}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnlab.engine.predictor import format_topk, predict_files

    results = predict_files(
        args.model, args.images, top_k=args.top_k, output=args.output, backend=args.backend
    )
    failed = [r for r in results if r.error]
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        print(format_topk(results))
    for r in failed:
        print(f"error: {r.path}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_coco_eval(args: argparse.Namespace) -> int:
    from cnnlab.core.io import write_json
    from cnnlab.tasks.coco_eval import evaluate_coco_files, format_table

    result = evaluate_coco_files(args.ground_truth, args.results)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab.inspect.summary import format_summary, group_rows, summary, totals
    from cnnlab.models import create_model, model_info
    from cnnlab.models.saved import config_of, load
    from cnnlab.models.spec import from_spec, is_spec_path

    if Path(args.model).is_dir():
        model = load(args.model)
        shape = tuple(config_of(model).get("input_shape") or ())
    elif is_spec_path(args.model):  # a network written as a spec (cnnlab.models.spec)
        model = from_spec(args.model)
        shape = model.input_shape
    else:
        info = model_info(args.model)
        shape = info.input_shape
        model = create_model(args.model, **({"in_channels": shape[0]} if len(shape) > 1 else {}))
    if args.input_shape:
        text = args.input_shape.replace("x", ",")
        try:
            shape = tuple(int(s) for s in text.split(","))
        except ValueError:
            shape = ()
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise ConfigError(
            "Expected --input C,H,W (an image), C,L (a signal) or L (token ids), "
            f"received {args.input_shape!r}"
        )
    if args.batch_size < 1 or (args.depth is not None and args.depth < 1):
        raise ConfigError(
            f"Expected --batch-size >= 1 and --depth >= 1, "
            f"received {args.batch_size} and {args.depth}"
        )
    rows = summary(model, shape)
    if args.json:
        shown = group_rows(rows, model, args.depth) if args.depth else rows
        report = {
            "rows": [{**dataclasses.asdict(r), "flops": r.flops} for r in shown],
            "totals": totals(rows, model, args.batch_size),
        }
        print(json.dumps(report, indent=2))
    else:
        print(format_summary(rows, model, depth=args.depth, batch_size=args.batch_size))
        formula = getattr(model, "receptive_field_formula", None)  # causal nets (WaveNet)
        if callable(formula):
            print(formula())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.inspect.summary import summary
    from cnnlab.models import create_model, list_models, model_info

    # The lecture's "speed-accuracy trade-off" view: size and cost at the design input.
    print(f"{'name':<18} {'params':>12} {'MMACs':>10} {'input':<10} {'paper':<28} year")
    for name in list_models(args.pattern, task=args.task):
        info = model_info(name)
        shape_args = {"in_channels": info.input_shape[0]} if len(info.input_shape) > 1 else {}
        try:
            with torch.device("meta"):  # shapes only: no memory, no init, no arithmetic
                model = create_model(name, **shape_args)
                macs = sum(row.macs for row in summary(model, info.input_shape))
        except RuntimeError:  # constant CPU buffers (an STFT window) cannot mix with meta
            model = create_model(name, **shape_args)
            macs = sum(row.macs for row in summary(model, info.input_shape))
        params = sum(p.numel() for p in model.parameters())
        shape = "x".join(map(str, info.input_shape))
        print(
            f"{name:<18} {params:>12,} {macs / 1e6:>10,.1f} {shape:<10} {info.paper:<28} {info.year}"
        )
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from cnnlab import data as datasets

    print(f"{'name':<14} {'classes':>7} {'input':<9} {'train':>7} {'test':>7}  source")
    for name in datasets.list_datasets():
        d = datasets.describe(name)
        shape = "x".join(map(str, d.get("input_shape") or ())) or "any"
        print(
            f"{name:<14} {d.get('num_classes') or '-'!s:>7} {shape:<9} "
            f"{d.get('train_size') or '-'!s:>7} {d.get('test_size') or '-'!s:>7}  {d.get('source', '')}"
        )
    return 0


# Seed 001's worked examples: the 4x4 max-pool and a 4x3 image under a 2x2 kernel.
EXAMPLE_POOL = "1 2 5 3; 3 0 1 2; 2 1 3 4; 1 1 2 0"
EXAMPLE_IMAGE = "1 2 3; 4 5 6; 7 8 9; 10 11 12"
EXAMPLE_KERNEL = "1 0; 2 -1"


def cmd_explain(args: argparse.Namespace) -> int:
    from cnnlab.reference import explain

    try:
        default = EXAMPLE_POOL if args.what == "pool" else EXAMPLE_IMAGE
        image = explain.parse_matrix(args.image or default)
        if args.what == "pool":
            print(explain.explain_pool(image, size=args.size))
            return 0
        kernel = explain.parse_matrix(args.kernel)
        if args.what == "conv":
            print(explain.explain_conv(image, kernel, stride=args.stride, padding=args.padding))
            return 0
        rows = image.shape[0] - kernel.shape[0] + 1
        cols = image.shape[1] - kernel.shape[1] + 1
        grad = args.grad or "; ".join(" ".join(["1"] * cols) for _ in range(rows))
        print(explain.explain_backprop(image, kernel, explain.parse_matrix(grad)))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return 0


def _add_explain(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="a worked example, every dot product written out",
        description="Print a convolution, a max-pool or conv backprop step by step for "
        "small matrices you give (rows separated by ';'). Defaults are seed 001's examples.",
    )
    p.add_argument("what", choices=["conv", "pool", "backprop"])
    p.add_argument("--image", help="the input matrix, e.g. '1 2 3; 4 5 6; 7 8 9'")
    p.add_argument("--kernel", default=EXAMPLE_KERNEL, help="the filter (conv, backprop)")
    p.add_argument("--grad", help="gradient of the loss w.r.t. the output (backprop; default ones)")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", type=int, default=0)
    p.add_argument("--size", type=int, default=2, help="pooling window (pool)")
    p.set_defaults(func=cmd_explain, image=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model; writes runs/<name>/")
    p.add_argument("--config", help="YAML file of TrainConfig keys; flags override it")
    p.add_argument(
        "--recipe",
        help="start from a named recipe (see `cnnlab recipes`); --config and flags override it",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recipes", help="list the shipped training recipes and what they reach")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("evaluate", help="test accuracy and loss of a saved model")
    p.add_argument("model", help="saved model folder, e.g. runs/demo")
    p.add_argument("--dataset", help="dataset name (default: the one it was trained on)")
    p.add_argument("--json", action="store_true", help="JSON even for a detector's COCO table")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="top-k classes (labels, masks, keypoints, boxes) for image files, WAV files, "
        "recordings or sentences",
    )
    p.add_argument("model", help="saved model folder, e.g. runs/demo")
    p.add_argument(
        "images",
        nargs="+",
        help="image files (PNG, JPEG, ...); for a sound model WAV files; for a vibration "
        "model recordings (.npz, .mat, .npy, .wav); for a text model sentences in quotes "
        "(or .txt files, one sentence per line)",
    )
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument(
        "--output",
        "-o",
        help="folder for pictures (masks, keypoints, boxes) and detections.json (detect)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--backend", choices=["torch", "onnx"], default="torch",
        help="onnx: run MODEL/model.onnx (cnnlab export) with onnxruntime, no TTA",
    )  # fmt: skip
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "coco-eval", help="COCO box AP/AR of a results file (the same numbers as pycocotools)"
    )
    p.add_argument("ground_truth", help="COCO ground-truth JSON (images, annotations, categories)")
    p.add_argument("results", help="COCO results JSON: [{image_id, category_id, bbox, score}]")
    p.add_argument("--json", help="also write the 12 numbers, per-class AP and PR curves here")
    p.set_defaults(func=cmd_coco_eval)

    p = sub.add_parser("summary", help="per-layer shapes, parameters, MACs, memory and rf")
    p.add_argument("model", help="registered model name or saved model folder")
    p.add_argument(
        "--input",
        "--input-shape",
        dest="input_shape",
        help="C,H,W or CxHxW (default: the model's own)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="for MACs and memory totals")
    p.add_argument("--depth", type=int, help="group rows by the first D parts of their names")
    p.add_argument("--json", action="store_true", help="rows and totals as JSON")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("report", help="write RUN_DIR/report.html (one offline page)")
    p.add_argument("run_dir", help="a run folder written by cnnlab train, e.g. runs/demo")
    p.add_argument("--max-images", type=int, default=8, help="Grad-CAM examples to show")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'lenet*'")
    p.add_argument("--task", help="only models for this task: classify, segment, keypoints, detect")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("datasets", help="list known datasets")
    p.set_defaults(func=cmd_datasets)

    _add_explain(sub)

    from cnnlab.app.cli_inspect import add_inspect_parser

    add_inspect_parser(sub)

    from cnnlab.app.cli_generate import add_generate_parser

    add_generate_parser(sub)

    from cnnlab.app.cli_transfer import add_lr_find_parser

    add_lr_find_parser(sub)

    from cnnlab.app.cli_bench import add_bench_parser

    add_bench_parser(sub)

    from cnnlab.app.cli_serve import add_serve_parser

    add_serve_parser(sub)

    from cnnlab.app.cli_export import add_export_parser

    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except USAGE_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CnnlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnlab recipes | head`: the reader left; not an error
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
