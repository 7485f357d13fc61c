"""cnnlab: convolutional neural networks — build, train fast on a small CPU, inspect, ship."""

import os
import sys

__version__ = "0.1.0"

if "torch" not in sys.modules:
    # PyTorch's OpenMP (libgomp) spins up to 300,000 rounds at every barrier. On small
    # shared VMs, when the hypervisor pauses one vCPU, the other spins and whole training
    # steps run 10-20x slower for a while; a shorter spin keeps speed and loses that
    # collapse (BENCHMARKS.md). Only a default: a value the user set wins.
    os.environ.setdefault("GOMP_SPINCOUNT", "30000")

from cnnlab.config import TrainConfig
from cnnlab.models import create_model, list_models
from cnnlab.saved import load, save
from cnnlab.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "__version__", "create_model", "list_models", "load", "save"]
