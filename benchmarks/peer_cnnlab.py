"""Peer worker: the seed-000 network as cnnlab's keras_cifar, trained by cnnlab's Trainer.

Only what the comparison fixes is set (optimizer, lr, batch, epochs, threads; no
augmentation, label smoothing, decay or TTA); memory format, precision and every
other speed setting are TrainConfig's defaults, so this measures what a user gets.
Prints one JSON line.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

import torch

import peer_common
from cnnlab import TrainConfig, Trainer, create_model
from cnnlab.data.dataset import ImageDataset


def main() -> None:
    args = peer_common.parse_args(__doc__.splitlines()[0])
    arrays = {k: torch.from_numpy(v) for k, v in peer_common.load_npz(args.data).items()}
    classes = [str(c) for c in range(10)]  # names play no part in training
    data = ImageDataset(
        "fashion-mnist", arrays["x_train"], arrays["y_train"].long(),
        arrays["x_test"], arrays["y_test"].long(), classes,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as runs:
        config = TrainConfig(
            runs_dir=runs, model="keras_cifar", model_args={"in_channels": 1, "input_size": 28},
            optimizer=args.optimizer, lr=args.lr, momentum=0.0, schedule="constant",
            weight_decay=0.0, label_smoothing=0.0, augment=None, tta=False,
            epochs=args.epochs, batch_size=args.batch_size, threads=args.threads,
            seed=args.seed, progress=False, report=False,
        )  # fmt: skip
        torch.manual_seed(args.seed)
        model = create_model(config.model, num_classes=10, **config.model_args)
        trainer = Trainer(model, config, log=lambda line: print(line, file=sys.stderr))
        started = time.perf_counter()
        history = trainer.fit(data)
        fit_seconds = time.perf_counter() - started  # includes setup and checkpoints
        test = trainer.evaluate(data.x_test, data.y_test)
    # Each history row's clock covers its epoch's training loop only, like the peers'.
    train_seconds = sum(row["seconds"] for row in history)
    images = round(sum(row["images_per_second"] * row["seconds"] for row in history))
    peer_common.emit(
        {
            "peer": "cnnlab",
            "images": images,
            "train_seconds": train_seconds,
            "fit_seconds": fit_seconds,
            "images_per_second": images / train_seconds,
            "test_accuracy": test["accuracy"],
            "versions": {"torch": torch.__version__},
            "config": config.to_dict(),
            "cpu_settings": cpu_settings(trainer),
        }
    )


def cpu_settings(trainer: Trainer) -> dict[str, Any] | None:
    """The speed settings fit() resolved from the config's automatic ones, when it says."""
    chosen = getattr(trainer, "cpu", None)
    return chosen.to_dict() if hasattr(chosen, "to_dict") else None


if __name__ == "__main__":
    main()
