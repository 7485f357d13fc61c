"""Peer worker: the seed-000 network in Keras 3 on TensorFlow-CPU, as the seed writes it.

Runs inside .venv-keras (`make bench` builds it from keras-requirements.txt); imports
neither torch nor cnnlab. Keras's own defaults otherwise: NHWC, fp32, and no XLA
(Keras turns jit_compile off on CPU-only machines). Prints one JSON line.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import peer_common


class EpochClock:
    """Seconds of each epoch, from Keras's epoch begin/end events (the training loop only)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: object = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def build_model(num_classes: int) -> keras.Sequential:
    """Conv32 same, Conv32 valid, pool, drop; the same with 64; Dense 512, drop, Dense."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.25),
            layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


def main() -> None:
    args = peer_common.parse_args(__doc__.splitlines()[0])
    # Threads are fixed before TensorFlow runs any op; afterwards it refuses the change.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    data = peer_common.load_npz(args.data)
    # uint8 NCHW -> float32 NHWC on the 0..1 scale, once, before the clock starts.
    x_train = data["x_train"].transpose(0, 2, 3, 1).astype(np.float32) / 255
    x_test = data["x_test"].transpose(0, 2, 3, 1).astype(np.float32) / 255
    model = build_model(num_classes=10)
    if args.optimizer == "rmsprop":
        opt = keras.optimizers.RMSprop(learning_rate=args.lr, rho=peer_common.RMSPROP_RHO)
    else:
        opt = keras.optimizers.Adam(learning_rate=args.lr)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=opt, metrics=["accuracy"])
    clock = EpochClock()
    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=clock.on_epoch_begin, on_epoch_end=clock.on_epoch_end
    )
    started = time.perf_counter()
    model.fit(
        x_train, data["y_train"], batch_size=args.batch_size, epochs=args.epochs,
        shuffle=True, verbose=0, callbacks=[callback],
    )  # fmt: skip
    fit_seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(x_test, data["y_test"], batch_size=1000, verbose=0)
    train_seconds = sum(clock.seconds)
    images = args.epochs * len(x_train)
    peer_common.emit(
        {
            "peer": "keras",
            "images": images,
            "train_seconds": train_seconds,
            "fit_seconds": fit_seconds,
            "images_per_second": images / train_seconds,
            "test_accuracy": float(accuracy),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "jit_compile": bool(model.jit_compile),
        }
    )


if __name__ == "__main__":
    main()
