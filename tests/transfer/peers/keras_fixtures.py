"""Write Keras Applications' weights and logits, the oracle of cnnlab's Keras mapping.

Run with the Keras venv (it must not import cnnlab or torch)::

    .venv-keras/bin/python tests/transfer/peers/keras_fixtures.py /tmp/interop/keras

For each architecture it writes ``<name>.weights.h5`` (``model.save_weights``),
``<name>.input.npy`` (NHWC) and ``<name>.logits.npy``; for ResNet50 also the whole model
as ``resnet50.keras`` and for MobileNetV2 as a Keras 2 style ``mobilenet_v2.h5``.
``tests/transfer/test_interop_keras.py`` maps each file onto cnnlab's model and compares
its logits with these.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

# cnnlab name -> (Keras Applications class, num_classes, input side, extra formats).
# VGG16 with its top must see 224x224 (Flatten fixes fc1's width); MobileNetV2 at 112 has
# stride-2 convs on even sides (112 ... 14) and on an odd one (7), so both of TF's "same"
# paddings are met; ResNet50 at 128 keeps 4x4 last maps.
ARCHITECTURES: dict[str, tuple[str, int, int, tuple[str, ...]]] = {
    "resnet50": ("ResNet50", 1000, 128, (".keras",)),
    "vgg16": ("VGG16", 10, 224, ()),
    "mobilenet_v2": ("MobileNetV2", 7, 112, (".h5",)),
}
BATCH = 2
CALIBRATION_BATCH = 8
SEED = 0


def randomise(model: Any, side: int) -> None:
    """Random weights everywhere a wrong mapping could hide, at a scale that keeps logits O(1).

    Keras starts biases at 0 and BN at the identity, so swapped same-shaped layers or a
    lost conv bias would still give Keras's logits; random values make every tensor count.
    Kernels are redrawn He-normal (Glorot shrinks VGG's logits below the test's tolerance).
    BN statistics are measured on noise (one train-mode pass with momentum 0), then
    perturbed: drawn wholly at random they let deep nets drift by orders of magnitude.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(SEED)
    norms = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape))
            norms.append((layer, layer.momentum))
            layer.momentum = 0.0  # moving stats := this batch's stats
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            kernel = layer.kernel
            fan_in = int(np.prod(kernel.shape[:-1]))
            kernel.assign(rng.normal(0, np.sqrt(2 / fan_in), kernel.shape))
            if layer.bias is not None:
                layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape))
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = layer.kernel
            kernel.assign(rng.normal(0, np.sqrt(2 / 9), kernel.shape))
    noise = rng.standard_normal((CALIBRATION_BATCH, side, side, 3)).astype("float32")
    model(noise, training=True)
    for layer, momentum in norms:
        layer.momentum = momentum
        std = np.sqrt(layer.moving_variance.numpy())
        layer.moving_mean.assign(layer.moving_mean.numpy() + rng.normal(0, 0.2, std.shape) * std)
        layer.moving_variance.assign(layer.moving_variance.numpy() * rng.uniform(0.5, 2, std.shape))


def write_fixture(name: str, out_dir: Path) -> None:
    """Build ``name`` with random weights, run it once, save weights, input and logits."""
    import keras
    import numpy as np

    class_name, num_classes, side, formats = ARCHITECTURES[name]
    keras.utils.set_random_seed(SEED)
    model = getattr(keras.applications, class_name)(
        weights=None,
        input_shape=(side, side, 3),
        classes=num_classes,
        classifier_activation=None,  # logits
    )
    randomise(model, side)
    x = np.random.default_rng(SEED + 1).standard_normal((BATCH, side, side, 3)).astype("float32")
    logits = np.asarray(model(x, training=False))
    model.save_weights(out_dir / f"{name}.weights.h5")
    for suffix in formats:
        model.save(out_dir / f"{name}{suffix}")
    np.save(out_dir / f"{name}.input.npy", x)
    np.save(out_dir / f"{name}.logits.npy", logits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--models", nargs="+", choices=sorted(ARCHITECTURES), default=None)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.models or ARCHITECTURES:
        start = time.perf_counter()
        write_fixture(name, args.out_dir)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
