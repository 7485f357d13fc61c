"""Training: the loop, callbacks, optimizers and schedules, checkpoints."""

from cnnlab.train.callbacks import Callback, EarlyStopping
from cnnlab.train.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train.trainer import Trainer
from cnnlab.train.whiten import whiten_first_conv, whitening_filters

__all__ = [
    "Callback",
    "EarlyStopping",
    "Trainer",
    "load_checkpoint",
    "save_checkpoint",
    "whiten_first_conv",
    "whitening_filters",
]
