"""Training: the loop, callbacks, optimizers and schedules, checkpoints."""

from cnnlab.engine.callbacks import Callback, EarlyStopping
from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.engine.trainer import Trainer
from cnnlab.engine.whiten import whiten_first_conv, whitening_filters

__all__ = [
    "Callback",
    "EarlyStopping",
    "Trainer",
    "load_checkpoint",
    "save_checkpoint",
    "whiten_first_conv",
    "whitening_filters",
]
