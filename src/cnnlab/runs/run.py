"""One training run end to end: data -> model -> fit -> test -> run folder."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import data as datasets
from cnnlab import transfer
from cnnlab.core.io import atomic_write_text, write_json
from cnnlab.core.records import record_of, require_record
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import Normalize
from cnnlab.engine import distributed
from cnnlab.engine.callbacks import Callback
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.trainer import Trainer, train_images
from cnnlab.models import create_model, model_info
from cnnlab.models.ensemble import ENSEMBLE
from cnnlab.models.saved import read_record, save
from cnnlab.models.shallow import SHALLOW
from cnnlab.models.spec import from_spec, is_spec_path
from cnnlab.tasks import get_task

DEFAULT_MODEL = next(f.default for f in fields(TrainConfig) if f.name == "model")


def build_model(config: TrainConfig, data: ImageDataset) -> nn.Module:
    """The config's model, sized for the data (channels, classes, image size if fixed, and
    the vocabulary's size for a text model)."""
    task = get_task(config.task or data.task)
    if is_spec_path(config.model):  # a network written as a spec: sized for the data
        shape = data.input_shape
        sized = {"in_channels": shape[0], "input_size": list(shape[1:]), **task.model_args(data)}
        return from_spec(config.model, **{**sized, **config.model_args})
    # Token ids (N, L) have no channel axis: their models take no in_channels.
    channels = {"in_channels": data.input_shape[0]} if len(data.input_shape) > 1 else {}
    args: dict[str, Any] = {**channels, **task.model_args(data)}
    if model_info(config.model).fixed_input and len(data.input_shape) == 2:
        args["input_size"] = data.input_shape[-1]  # a signal's length L
    elif model_info(config.model).fixed_input:
        h, w = data.input_shape[-2:]
        args["input_size"] = h if h == w else [h, w]
    preprocess = data.preprocess or {}
    if preprocess.get("kind") == "text":  # an embedding row per word of the vocabulary
        args["vocab_size"] = len(preprocess["vocabulary"]["tokens"])
    name, args = pretrained_architecture(config, args)
    args.update(config.model_args)
    if config.weights is None:
        return create_model(name, **args)
    return transfer.create_model(
        name,
        weights=config.weights,
        first_conv=config.first_conv,
        classes=task.class_names(data),
        log=print,
        **args,
    )


def pretrained_architecture(
    config: TrainConfig, args: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The architecture to build: a saved folder's own (and its arguments, under the
    data's) when ``weights`` is one and ``model`` is left at its default; else the config's."""
    weights = Path(config.weights) if config.weights else None
    if weights is None or not weights.is_dir() or config.model != DEFAULT_MODEL:
        return config.model, args
    record = read_record(weights)
    if record.architecture in (ENSEMBLE, SHALLOW):
        return config.model, args
    sized = ("num_classes", "in_channels", "input_size", "vocab_size")
    kept = {k: v for k, v in record.model_args.items() if k not in sized}
    return record.architecture, {**kept, **args}


def train_one(
    config: TrainConfig,
    *,
    resume: bool = False,
    data: ImageDataset | None = None,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Callback] = (),
) -> tuple[dict[str, Any], nn.Module]:
    """One model's run (what run_training does without an ensemble): (metrics, model).

    In a distributed run (cnnlab.engine.distributed) every rank trains; rank 0 alone
    tests (each test image once) and writes the run folder."""
    # 1. Data and model, both seeded so a rerun builds the same initial weights.
    if data is None:
        data = datasets.load(config.dataset, **config.dataset_args)
    torch.manual_seed(config.seed)
    model = build_model(config, data)
    if distributed.rank_and_world()[0] == 0:  # a distributed run's folder is rank 0's
        start_run_dir(config)
    # 2. Train.
    trainer = Trainer(model, config, log=log, callbacks=callbacks)
    started = time.perf_counter()
    history = trainer.fit(data, resume=resume)
    train_seconds = sum(row["seconds"] for row in history)
    # 3. Test and record.
    if trainer.rank != 0:
        return {}, trainer.model
    tested = time.perf_counter()
    test = trainer.evaluate(data.x_test, data.targets_test)
    test_seconds = time.perf_counter() - tested
    metrics = {
        **test_metrics(test),
        "task": trainer.task.name,
        "epochs": len(history),
        "train_images": train_images(data, config.val_split),  # after the validation split
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        "model": config.model,
        "dataset": data.name,
        "run_dir": str(config.run_dir),
    }
    if trainer.world > 1:
        metrics["distributed"] = {
            "processes": trainer.world,
            "ranks_agreed_steps": trainer.agreed_steps,
        }
    if trainer.plan is not None:  # what the budget bought and what was spent
        spent = trainer.plan.used.get("fit_seconds", train_seconds) + test_seconds
        metrics["time_budget"] = {
            **trainer.plan.to_dict(), "test_seconds": test_seconds, "spent_seconds": spent,
        }  # fmt: skip
    norm = trainer.normalize
    stats = (norm.mean.flatten().tolist(), norm.std.flatten().tolist())
    finish_run_dir(config, trainer.model, data, metrics, stats)
    return metrics, trainer.model


def test_metrics(test: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's test entries: test_<metric> for each of the task's, and test_images."""
    out = {f"test_{k}": v for k, v in test.items() if k not in ("loss", "n")}
    return {**out, "test_loss": test["loss"], "test_images": test["n"]}


def start_run_dir(config: TrainConfig) -> None:
    """Create the run folder and write the resolved config.yaml (not for fast_dev_run)."""
    if not config.fast_dev_run:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config.run_dir / "config.yaml", config.to_yaml())


def saved_extra(config: TrainConfig) -> dict[str, Any]:
    """What a saved model records of its run, beyond weights and normalisation."""
    return {"dataset": config.dataset, "dataset_args": config.dataset_args, "tta": config.tta}


def finish_run_dir(
    config: TrainConfig,
    model: nn.Module,
    data: ImageDataset,
    metrics: dict[str, Any],
    stats: tuple[list[float], list[float]],
) -> None:
    """Save the model, metrics.json and (when asked) the report; adds "report" to metrics.

    ``stats`` is the (mean, std) per channel the model's inputs were normalised with.
    Nothing is written for fast_dev_run.
    """
    if config.fast_dev_run:
        return
    run_dir = config.run_dir
    mean, std = stats
    record = record_of(model)  # the task's class names (segmentation: background first)
    classes = record.classes if record is not None and record.classes else data.classes
    save(
        model, run_dir, classes=classes, input_shape=data.input_shape,
        mean=mean, std=std, extra=saved_extra(config),
    )  # fmt: skip
    write_json(run_dir / "metrics.json", metrics)
    if config.report:
        from cnnlab.runs.report import write_report  # matplotlib loads only when needed

        metrics["report"] = str(write_report(run_dir, data=data))


def train_shallow(
    config: TrainConfig, *, data: ImageDataset | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """``config.shallow``: fit a shallow classifier on the features of ``config.weights``
    (no gradient descent), test it and write the run folder like any run."""
    from cnnlab.engine import evaluator
    from cnnlab.models.saved import load

    assert config.weights is not None and config.shallow is not None
    if data is None:
        data = datasets.load(config.dataset, **config.dataset_args)
    start_run_dir(config)
    started = time.perf_counter()
    # A saved model as it is; another library's file: the config's architecture, sized.
    body = load(config.weights) if Path(config.weights).is_dir() else build_model(config, data)
    model = transfer.fit_shallow(body, data, config.shallow, seed=config.seed, log=log)
    train_seconds = time.perf_counter() - started
    record = require_record(model)
    assert record.mean is not None and record.std is not None
    settings = evaluator.EvalSettings(
        Normalize(record.mean, record.std), config.eval_batch_size, config.tta
    )
    task = get_task("classify")
    test = evaluator.evaluate(model, task, data.x_test, data.targets_test, settings)
    metrics = {
        **test_metrics(test), "task": "classify", "shallow": config.shallow,
        "chosen": record.model_args["chosen"], "weights": config.weights,
        "train_seconds": train_seconds, "model": config.model, "dataset": data.name,
        "run_dir": str(config.run_dir),
    }  # fmt: skip
    finish_run_dir(config, model, data, metrics, (record.mean, record.std))
    return metrics
