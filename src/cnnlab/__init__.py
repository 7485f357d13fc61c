"""cnnlab: convolutional neural networks — build, train fast on a small CPU, inspect, ship."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from cnnlab.core import __version__

if "torch" not in sys.modules:
    # PyTorch's OpenMP (libgomp) spins up to 300,000 rounds at every barrier. On small
    # shared VMs, when the hypervisor pauses one vCPU, the other spins and whole training
    # steps run 10-20x slower for a while; a shorter spin keeps speed and loses that
    # collapse (BENCHMARKS.md). Only a default: a value the user set wins.
    os.environ.setdefault("GOMP_SPINCOUNT", "30000")

if TYPE_CHECKING:
    from cnnlab.engine.config import TrainConfig
    from cnnlab.engine.trainer import Trainer
    from cnnlab.models import Ensemble, list_models
    from cnnlab.models.saved import load, save
    from cnnlab.transfer import create_model

# The public API, imported on first use: `import cnnlab.reference` (NumPy only) must
# work without loading torch.
_EXPORTS = {
    "Ensemble": "cnnlab.models",
    "TrainConfig": "cnnlab.engine.config",
    "Trainer": "cnnlab.engine.trainer",
    "create_model": "cnnlab.transfer",
    "list_models": "cnnlab.models",
    "load": "cnnlab.models.saved",
    "save": "cnnlab.models.saved",
}

__all__ = [
    "Ensemble",
    "TrainConfig",
    "Trainer",
    "__version__",
    "create_model",
    "list_models",
    "load",
    "save",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
