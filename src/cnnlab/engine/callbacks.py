"""Callbacks: hooks the trainer calls before and after the fit, each epoch and each batch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnlab.engine.trainer import Trainer


class Callback:
    """Override any of the events; each receives the trainer, whose state it may read.

    ``trainer.stop_training = True`` ends the fit after the current epoch (the
    fastai "cancel" event, without exceptions for control flow).
    """

    def before_fit(self, trainer: Trainer) -> None: ...

    def before_epoch(self, trainer: Trainer) -> None: ...

    def before_batch(self, trainer: Trainer) -> None: ...

    def after_batch(self, trainer: Trainer) -> None: ...

    def after_epoch(self, trainer: Trainer) -> None: ...

    def after_fit(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints so a resumed run behaves like an unbroken one."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved by ``min_delta`` for ``patience`` epochs.

    Monitors ``val_loss`` when the run has a validation split, else ``train_loss``.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"Expected patience >= 1, received patience={patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.bad_epochs = 0

    def after_epoch(self, trainer: Trainer) -> None:
        loss = trainer.monitored_loss
        if loss < self.best - self.min_delta:
            self.best, self.bad_epochs = loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            trainer.log(f"early stopping: no improvement for {self.patience} epochs")
            trainer.stop_training = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
