"""Ensembles trained side by side: N members, one process each, probabilities averaged.

Why processes: one training process of a small network leaves a small CPU's cores
partly idle. Its steps are many short ops that do not split well over threads, while
independent 1-thread processes need no communication until the end. On 2 cores
(``benchmarks/side_by_side.py``, resnet_mini) two 1-thread processes together train
1.39x the images/second of one 2-thread process in bf16 and 1.15x in fp32; averaging
the two models then buys accuracy a single model would need a longer run for.

Run folder: ``RUN/member-0``, ``RUN/member-1``, ... are complete runs of their own
(checkpoint, history, saved model; resumable one by one); ``RUN`` itself holds the
resolved config, the saved :class:`~cnnlab.models.ensemble.Ensemble`, metrics.json
(with each member's accuracy) and the report.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from typing import Any

import torch

from cnnlab import data as datasets
from cnnlab.core.cpu import num_threads
from cnnlab.core.errors import ConfigError
from cnnlab.core.records import ModelRecord, require_record, set_record
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.budget import parse_duration
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import evaluate_model, task_of
from cnnlab.engine.trainer import Trainer, train_images
from cnnlab.models.ensemble import BOX_RULES, Ensemble, build_model
from cnnlab.models.saved import freeze, frozen_names
from cnnlab.runs.members import (
    Result,
    boosted_members,
    hold_out,
    member_sample,
    snapshot_members,
    subset,
)
from cnnlab.runs.run import build_model as build_run_model
from cnnlab.runs.run import finish_run_dir, start_run_dir, test_metrics, train_one
from cnnlab.tasks import get_task
from cnnlab.transfer.combine import out_of_fold_indices
from cnnlab.transfer.ensembles import fit_combiner, fit_rule, member_probabilities


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def plan(config: TrainConfig, cores: int | None = None) -> tuple[int, int]:
    """(processes at once, torch threads per member) for ``config.ensemble`` members.

    One process per core, at most one per member; the cores are shared out evenly
    unless ``config.threads`` says how many each member uses.
    """
    cores = cores or available_cores()
    processes = max(1, min(config.ensemble, cores))
    threads = config.threads or max(1, cores // processes)
    return processes, threads


def check_rule(combine: str, task: str) -> None:
    """ConfigError when ``combine`` cannot combine ``task``'s outputs: box fusion is for
    detectors, whose raw outputs only ``mean`` can otherwise average."""
    detect = ("wbf", "nms", "mean")
    if (combine in BOX_RULES) != (task == "detect") and not (
        task == "detect" and combine in detect
    ):
        expected = f"one of {detect}" if task == "detect" else f"a rule other than {BOX_RULES}"
        raise ConfigError(
            f"ensemble_combine={combine!r} does not combine the {task} task's outputs; "
            f"expected {expected}"
        )


def member_config(config: TrainConfig, index: int, threads: int, parallel: bool) -> TrainConfig:
    """Member ``index``'s config: its own seed, run folder inside the ensemble's, threads.

    Seeds are ``seed * ensemble + index``, so ensembles with different seeds share no
    member. Parallel members print epoch lines but no progress bars (they would mix).
    """
    values = config.to_dict()
    values.update(
        ensemble=1,
        seed=config.seed * config.ensemble + index,
        name=f"member-{index}",
        runs_dir=str(config.run_dir),
        threads=threads,
        report=False,
        progress=config.progress and not parallel,
    )
    return TrainConfig.from_dict(values)


def stop_when_orphaned(parent_pid: int, poll: float = 1.0, grace: float = 30.0) -> None:
    """Interrupt this process (as Ctrl-C would) once ``parent_pid`` is no longer its parent.

    A member keeps training if the process that started it is killed (SIGTERM or SIGKILL
    skip the parent's clean-up): it would hold a core for the rest of its run. This
    daemon thread notices within ``poll`` seconds and raises KeyboardInterrupt in the
    main thread, so the member stops the way an interrupted run does (its last
    checkpoint kept, resumable); if it is still alive ``grace`` seconds later, it exits.
    """

    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored and threading.current_thread() is threading.main_thread():
        # A job started in the background (`cnnlab train ... &` from a script) inherits
        # SIGINT ignored, which would leave only the hard exit below.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="stop-when-orphaned", daemon=True).start()


def tune_once(member: TrainConfig, data: ImageDataset) -> str:
    """Choose the members' CPU settings once, before any starts; returns the log line.

    The choice lands in the autotune cache under the member's thread count, where every
    member then finds it: members that each timed the candidates while the others were
    timing theirs chose differently (channels_last 1.64x vs channels_last+compile 1.22x
    in one run on an AVX2 machine).
    """
    with num_threads(member.threads):
        return _quiet_trainer(member, data).choose_cpu_settings(data).message()


def _quiet_trainer(member: TrainConfig, data: ImageDataset) -> Trainer:
    """A Trainer for ``member`` that trains nothing: what choosing and timing ask of."""
    torch.manual_seed(member.seed)
    return Trainer(build_run_model(member, data), member, log=lambda line: None)


def one_model_instead(
    config: TrainConfig, member: TrainConfig, data: ImageDataset
) -> TrainConfig | None:
    """With ``ensemble_min_epochs`` and a time budget: the config of one model on all the
    cores when a member would train fewer epochs than that, else None.

    The member's step is timed alone before any starts (a few seconds); side by side
    the members run somewhat slower, which the threshold is chosen to absorb.
    """
    seconds = parse_duration(config.time_budget)
    if seconds is None or config.ensemble_min_epochs is None:
        return None
    with num_threads(member.threads):
        step = _quiet_trainer(member, data).measure_step(data)
    batches = train_images(data, config.val_split) // config.batch_size
    epochs = seconds / (step * max(1, batches))
    if epochs >= config.ensemble_min_epochs:
        print(f"time budget: ~{epochs:.1f} epochs per member at {step:.3f} s/step", flush=True)
        return None
    print(
        f"time budget: a member would train ~{epochs:.1f} epochs at {step:.3f} s/step, fewer "
        f"than ensemble_min_epochs={config.ensemble_min_epochs:g}: one model on all the "
        "cores instead of the ensemble",
        flush=True,
    )
    values = config.to_dict() | {"ensemble": 1, "ensemble_min_epochs": None}
    return TrainConfig.from_dict(values)


def _train_member(
    config: TrainConfig, resume: bool, data: ImageDataset, parent_pid: int | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor], list[str]]:
    """Train one member (in a worker process): (metrics, model record, weights, frozen)."""
    if parent_pid is not None:
        stop_when_orphaned(parent_pid)

    def log(line: str) -> None:
        print(f"[{config.name}] {line}", flush=True)

    metrics, model = train_one(config, resume=resume, data=data, log=log)
    return metrics, require_record(model).to_dict(), model.state_dict(), frozen_names(model)


def _train_side_by_side(
    members: list[TrainConfig], data: list[ImageDataset], resume: bool, processes: int
) -> list[Result]:
    if processes == 1:
        return [_train_member(c, resume, d) for c, d in zip(members, data, strict=True)]
    context = multiprocessing.get_context("spawn")  # fork after torch threads is unsafe
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        jobs = pool.map(_train_member, members, repeat(resume), data, repeat(os.getpid()))
        return list(jobs)


def rebuilt(results: list[Result]) -> list[torch.nn.Module]:
    """The trained members as models, each with its record (normalisation, TTA) and its
    frozen parameters frozen again (so a saved ensemble lists them as frozen too)."""
    models = []
    for _, record, state, frozen in results:
        model = build_model(record)
        set_record(model, ModelRecord.from_dict(record))
        model.load_state_dict(state)
        freeze(model, frozen)
        models.append(model)
    return models


def out_of_fold(
    config: TrainConfig,
    members: list[TrainConfig],
    data: ImageDataset,
    resume: bool,
    processes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The members' out-of-fold class probabilities (M, N, K) of every training image and
    the labels (N,): per fold, each member (its own seed) trains on the other folds, in
    ``RUN/fold-k/member-i``, and predicts the fold's images, which it never saw."""
    labels = data.targets_train["label"]
    probs: torch.Tensor | None = None
    pairs = out_of_fold_indices(len(labels), config.ensemble_folds, config.seed)
    for k, (train, held) in enumerate(pairs):
        print(
            f"out-of-fold {k + 1}/{len(pairs)}: {len(members)} members on {len(train)} images, "
            f"predicting the other {len(held)}",
            flush=True,
        )
        fold = [dataclasses.replace(c, runs_dir=str(config.run_dir / f"fold-{k}")) for c in members]
        rest = subset(data, train)
        samples = [member_sample(config, rest, c.seed) for c in fold]
        models = rebuilt(_train_side_by_side(fold, samples, resume, processes))
        first = require_record(models[0])
        stats = {"mean": first.mean, "std": first.std}
        p = member_probabilities(Ensemble(models), data.x_train[held], stats)
        if probs is None:
            probs = p.new_zeros((p.shape[0], len(labels), *p.shape[2:]))
        probs[:, held] = p
    assert probs is not None  # at least two folds
    return probs, labels


def run_ensemble(
    config: TrainConfig, *, resume: bool = False, data: ImageDataset | None = None
) -> dict[str, Any]:
    """Train ``config.ensemble`` members side by side, then test and save their average.

    Returns metrics as ``run_training`` does; ``train_seconds`` is the slowest member's
    training time (they train at the same time), ``wall_seconds`` the whole member phase
    including start-up, and ``members`` lists each member's seed, accuracy and time.
    """
    if data is None:
        data = datasets.load(config.dataset, **config.dataset_args)
    processes, threads = plan(config)
    members = [
        member_config(config, i, threads, parallel=processes > 1) for i in range(config.ensemble)
    ]
    task = get_task(config.task or data.task, **config.task_args)
    combine = config.ensemble_combine or task.ensemble_combine
    check_rule(combine, task.name)  # before any member trains
    data, holdout = hold_out(config, data, combine)
    member_data = [member_sample(config, data, c.seed) for c in members]
    if holdout is not None:  # the ensemble's own held-out images replace each member's
        members = [dataclasses.replace(c, val_split=0.0) for c in members]
    run_dir = config.run_dir
    start_run_dir(config)
    print(
        f"ensemble of {config.ensemble} x {config.model}: {processes} process(es) at a time, "
        f"{threads} thread(s) each, members in {run_dir}/member-*",
        flush=True,
    )
    # 1. The members: snapshots of one run, boosted one after another, or side by side.
    started = time.perf_counter()
    alphas: list[float] = []
    if config.ensemble_sampling == "snapshot":
        results = snapshot_members(config, data)
    elif config.ensemble_sampling == "boosting":
        sequential = [
            member_config(config, i, config.threads or available_cores(), parallel=False)
            for i in range(config.ensemble)
        ]
        results, alphas = boosted_members(sequential, data)
        combine = "boosted"
    else:
        if processes > 1 and not resume:  # a resumed member keeps the choice it started with
            print(f"{tune_once(members[0], data)}, for every member", flush=True)
            single = one_model_instead(config, members[0], data)
            if single is not None:
                return train_one(single, data=data)[0]
            started = time.perf_counter()
        results = _train_side_by_side(members, member_data, resume, processes)
    wall = time.perf_counter() - started
    # 2. Their average, with what predict() needs to prepare images and repeat the TTA.
    models = rebuilt(results)
    task = task_of(models[0])
    ensemble = Ensemble(models, combine=combine).eval()
    if alphas:  # boosting: each member's say is its SAMME alpha
        ensemble.weights.copy_(torch.tensor(alphas))
    stats = data.channel_stats()  # what every member normalised with (bags: their own)
    fitted = {}
    if config.ensemble_folds:
        probs, labels = out_of_fold(config, members, data, resume, processes)
        fitted = fit_rule(ensemble, probs, labels) | {"folds": config.ensemble_folds}
        print(f"{combine}: fitted on {probs.shape[1]} out-of-fold predictions: {fitted}")
    elif holdout is not None:
        first = require_record(models[0])
        fitted = fit_combiner(
            ensemble, holdout.x_train, holdout.targets_train["label"],
            {"mean": first.mean, "std": first.std},
        )  # fmt: skip
        print(f"{combine}: fitted on {len(holdout.x_train)} held-out images: {fitted}", flush=True)
    n_test = config.eval_batch_size if config.fast_dev_run else len(data.x_test)
    targets = {k: v[:n_test] for k, v in data.targets_test.items()}
    test = evaluate_model(ensemble, data.x_test[:n_test], targets)
    headline = f"test_{task.metric}"
    metrics: dict[str, Any] = {
        **test_metrics(test),
        "task": task.name,
        "epochs": max(m["epochs"] for m, *_ in results),
        "train_seconds": max(m["train_seconds"] for m, *_ in results),
        "wall_seconds": wall,
        "model": f"ensemble of {config.ensemble} x {config.model}",
        "dataset": data.name,
        "run_dir": str(run_dir),
        "combine": combine,
        "sampling": config.ensemble_sampling,
        **({"fitted": fitted} if fitted else {}),
        **({"alphas": alphas} if alphas else {}),
        "members": [
            {
                "run_dir": m["run_dir"],
                "seed": c.seed,
                headline: m[headline],
                "train_seconds": m["train_seconds"],
            }
            for c, (m, *_) in zip(members, results, strict=False)
        ],
    }
    for c, (m, *_) in zip(members, results, strict=False):
        shown = f"{m[headline]:.2%}" if task.metric == "accuracy" else f"{m[headline]:.4f}"
        print(f"[{c.name}] test {task.metric.replace('_', ' ')} {shown} (seed {c.seed})")
    # 3. The run folder.
    finish_run_dir(config, ensemble, data, metrics, stats)
    return metrics
