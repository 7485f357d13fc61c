"""cnnlab: convolutional neural networks — build, train fast on a small CPU, inspect, ship."""

__version__ = "0.1.0"

from cnnlab.config import TrainConfig
from cnnlab.models import create_model, list_models
from cnnlab.saved import load, save
from cnnlab.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "__version__", "create_model", "list_models", "load", "save"]
