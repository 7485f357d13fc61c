"""Ways to get ensemble members beyond independent seeds: bootstrap samples (bagging),
SAMME boosting (members one after another on reweighted samples) and snapshots of one run
whose learning rate restarts (Huang et al. 2017, "Snapshot ensembles: train 1, get M for
free"); and the held-out split that fitted combination rules learn from.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.core.records import require_record
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.callbacks import Callback
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import evaluate_model
from cnnlab.models.ensemble import FITTED_RULES
from cnnlab.models.saved import frozen_names
from cnnlab.runs.run import train_one
from cnnlab.transfer.combine import bootstrap_indices, samme_weights
from cnnlab.transfer.ensembles import predicted_classes

# One trained member: (metrics, its record as a dict, its weights, its frozen parameters).
Result = tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor], list[str]]


def hold_out(
    config: TrainConfig, data: ImageDataset, combine: str
) -> tuple[ImageDataset, ImageDataset | None]:
    """(what the members train on, the held-out images a fitted rule learns from).

    Only ``weighted`` and ``stacked`` fitted without folds hold images out: ``val_split`` of the training
    images, chosen with the ensemble's seed, never seen by any member.
    """
    if combine not in FITTED_RULES or config.ensemble_folds:  # out of fold: none held out
        return data, None
    n_val = int(len(data.x_train) * config.val_split)
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(config.seed))
    return subset(data, order[n_val:]), subset(data, order[:n_val])


def member_sample(config: TrainConfig, data: ImageDataset, seed: int) -> ImageDataset:
    """A member's training images: all of them, or a bootstrap sample (bagging)."""
    if config.ensemble_sampling != "bootstrap":
        return data
    return subset(data, bootstrap_indices(len(data.x_train), seed))


def subset(data: ImageDataset, index: torch.Tensor) -> ImageDataset:
    """``data`` with only the training items ``index`` (test split unchanged)."""
    y = data.y_train[index] if data.y_train is not None else None
    targets = {k: v[index] for k, v in data.targets_train.items()}
    return dataclasses.replace(data, x_train=data.x_train[index], y_train=y, targets_train=targets)


def _result(metrics: dict[str, Any], model: nn.Module) -> Result:
    return metrics, require_record(model).to_dict(), model.state_dict(), frozen_names(model)


class Snapshots(Callback):
    """Keep a copy of the weights at the end of every ``every`` epochs (a cycle's end)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.states: list[dict[str, torch.Tensor]] = []

    def after_epoch(self, trainer: Any) -> None:
        if trainer.epoch % self.every == 0:
            self.states.append(copy.deepcopy(trainer.model.state_dict()))


def snapshot_members(config: TrainConfig, data: ImageDataset) -> list[Result]:
    """One run of ``config.epochs`` whose cosine schedule restarts ``config.ensemble``
    times; the weights at each cycle's end are a member (each tested on its own)."""
    every = config.epochs // config.ensemble
    run = dataclasses.replace(
        config, ensemble=1, schedule="cyclic", cycles=config.ensemble, warmup_epochs=0.0,
        epochs=every * config.ensemble, name="snapshots", runs_dir=str(config.run_dir),
        report=False,
    )  # fmt: skip
    snapshots = Snapshots(every)
    metrics, model = train_one(run, data=data, callbacks=[snapshots])
    results = []
    for i, state in enumerate(snapshots.states):
        member = copy.deepcopy(model)
        member.load_state_dict(state)
        test = evaluate_model(member.eval(), data.x_test, data.targets_test)
        seconds = metrics["train_seconds"] * (i + 1) / len(snapshots.states)
        row = {**metrics, **{f"test_{k}": v for k, v in test.items() if k not in ("loss", "n")}}
        row |= {
            "epochs": every * (i + 1),
            "train_seconds": seconds,
            "run_dir": f"{run.run_dir} (cycle {i + 1})",
        }
        results.append(_result(row, member))
    return results


def boosted_members(
    members: list[TrainConfig], data: ImageDataset, log: Any = print
) -> tuple[list[Result], list[float]]:
    """SAMME: member ``i`` trains on N images drawn by the current weights; its errors on
    the whole training set raise their weights for the next. Stops early at a member no
    better than chance (it is dropped). Returns the members and their alphas."""
    labels = data.targets_train["label"]
    n, k = len(labels), data.num_classes
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    results: list[Result] = []
    alphas: list[float] = []
    for config in members:
        draw = torch.multinomial(
            weights, n, replacement=True, generator=torch.Generator().manual_seed(config.seed)
        )
        metrics, model = train_one(config, data=subset(data, draw))
        record = require_record(model)
        stats = {"mean": record.mean, "std": record.std}
        predicted = predicted_classes(model, data.x_train, stats)
        try:
            alpha, weights = samme_weights(weights, predicted, labels, k)
        except ConfigError as e:
            log(f"boosting stops before {config.name}: {e}")
            if not results:  # the first member stays, alone
                results, alphas = [_result(metrics, model)], [1.0]
            break
        results.append(_result(metrics, model))
        alphas.append(alpha)
        log(f"[{config.name}] SAMME alpha {alpha:.3f}")
    return results, alphas
