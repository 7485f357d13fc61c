"""Training: the loop, callbacks, optimizers and schedules, checkpoints."""

from cnnlab.train.callbacks import Callback, EarlyStopping
from cnnlab.train.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train.trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "Trainer", "load_checkpoint", "save_checkpoint"]
