"""Runs: one config -> one run folder (a single model or an ensemble trained side by side)."""

from __future__ import annotations

from typing import Any

from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import distributed
from cnnlab.engine.config import TrainConfig
from cnnlab.runs.ensemble import run_ensemble
from cnnlab.runs.run import train_one, train_shallow

__all__ = ["run_training"]


def run_training(
    config: TrainConfig, *, resume: bool = False, data: ImageDataset | None = None
) -> dict[str, Any]:
    """Train, evaluate on the test split and write the run folder; returns the metrics.

    Run folder (``config.run_dir``): config.yaml (resolved), checkpoint.safetensors,
    history.csv, config.json + model.safetensors (the saved model), metrics.json.
    With ``config.ensemble`` > 1 the members train side by side, each in a run folder
    of its own inside this one (cnnlab.runs.ensemble).
    """
    if config.nproc > 1 or distributed.under_torchrun():
        return _distributed(config, resume=resume, data=data)
    if config.shallow:
        return train_shallow(config, data=data)
    if config.ensemble > 1:
        return run_ensemble(config, resume=resume, data=data)
    metrics, _ = train_one(config, resume=resume, data=data)
    return metrics


def _distributed(config: TrainConfig, *, resume: bool, data: ImageDataset | None) -> dict[str, Any]:
    """--nproc N on this machine, or one rank of a torchrun job (several machines)."""
    if not distributed.under_torchrun():
        return distributed.launch(config, resume=resume, data=data)
    distributed.init_from_env()
    rank, world = distributed.rank_and_world()
    distributed.check_config(config, world)
    try:
        metrics, _ = train_one(
            config, resume=resume, data=data, log=print if rank == 0 else lambda _: None
        )
    finally:
        distributed.destroy()
    return metrics
