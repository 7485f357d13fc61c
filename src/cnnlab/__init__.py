"""cnnlab: convolutional neural networks — build, train fast on a small CPU, inspect, ship."""

__version__ = "0.1.0"

from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.models import create_model, list_models  # noqa: E402
from cnnlab.saved import load, save  # noqa: E402
from cnnlab.train.trainer import Trainer  # noqa: E402

__all__ = ["Trainer", "TrainConfig", "__version__", "create_model", "list_models", "load", "save"]
