"""What the three peer workers of benchmarks/peers.py share: arguments, data, the result line.

NumPy and the standard library only: the Keras worker imports this inside its own venv,
where neither torch nor cnnlab exist.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

# The seed's optimizer is RMSprop(lr=1e-4, decay=1e-6); Adam is the usual modern choice.
# decay is left out: Keras 3 dropped it, and over 2 epochs (938 steps) it lowers lr by 0.09%.
DEFAULT_LR = {"rmsprop": 1e-4, "adam": 1e-3}
# RMSprop's moving-average factor in all three: PyTorch's default (alpha), which
# cnnlab's "rmsprop" uses and cannot change; Keras's own default (rho) would be 0.9.
RMSPROP_RHO = 0.99


def parse_args(description: str) -> argparse.Namespace:
    """The options every worker takes; peers.py passes the same values to all three."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help=".npz written by peers.py")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="adam")
    parser.add_argument("--lr", type=float, default=None, help="default: per optimizer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    return args


def load_npz(path: str) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test: uint8 images (N, 1, 28, 28), int64 labels."""
    with np.load(path) as f:
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def emit(result: dict[str, Any]) -> None:
    """The worker's one result line on stdout (everything else goes to stderr)."""
    print(json.dumps(result), flush=True)
