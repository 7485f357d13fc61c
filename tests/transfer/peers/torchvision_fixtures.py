"""Write torchvision's weights and logits, the oracle of cnnlab's torchvision mapping.

Run with torchvision's own venv (it must not import cnnlab)::

    .venv-torchvision/bin/python tests/transfer/peers/torchvision_fixtures.py runs/interop/torchvision  (or: make interop)

For each architecture it writes ``<name>.pth`` (``model.state_dict()``) and ``<name>.io.pt``
(``{"input": x, "logits": y}``), both loadable with ``torch.load(weights_only=True)``;
``tests/transfer/test_interop_torchvision.py`` maps the first onto cnnlab's model and
compares its logits with the second. The table below is importable without torchvision,
so that a unit test can check it covers every architecture cnnlab maps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

# cnnlab name -> (torchvision builder keyword arguments, input side). Inputs are small to
# keep the run short: 64x64 (2x2 last maps), or a net's minimum where it is cheaper or
# larger; the varied num_classes show that the classifiers map whatever their width.
SIDE = 64
ARCHITECTURES: dict[str, tuple[dict[str, Any], int]] = {
    "resnet18": ({"num_classes": 10}, SIDE),
    "resnet34": ({"num_classes": 1000}, SIDE),
    "resnet50": ({"num_classes": 7}, SIDE),
    "resnet101": ({"num_classes": 10}, SIDE),
    "resnet152": ({"num_classes": 1000}, SIDE),
    "vgg11": ({"num_classes": 10}, 32),  # the 7x7 adaptive pool takes 32x32
    "vgg11_bn": ({"num_classes": 1000}, 32),
    "vgg13": ({"num_classes": 7}, 32),
    "vgg13_bn": ({"num_classes": 10}, 32),
    "vgg16": ({"num_classes": 1000}, 32),
    "vgg16_bn": ({"num_classes": 7}, 32),
    "vgg19": ({"num_classes": 10}, 32),
    "vgg19_bn": ({"num_classes": 1000}, 32),
    "alexnet": ({"num_classes": 10}, 63),  # torchvision's min_size
    "densenet121": ({"num_classes": 1000}, SIDE),
    "densenet169": ({"num_classes": 7}, SIDE),
    "densenet201": ({"num_classes": 10}, SIDE),
    # transform_input re-normalises the input in torchvision only (cnnlab has no such
    # step), and weights=None already turns it off; it is spelled out to say so.
    "googlenet": (
        {"num_classes": 10, "aux_logits": True, "transform_input": False, "init_weights": True},
        SIDE,
    ),
    "inception_v3": (
        {"num_classes": 1000, "aux_logits": True, "transform_input": False, "init_weights": True},
        75,  # torchvision's min_size
    ),
    "mobilenet_v2": ({"num_classes": 7}, SIDE),
    "efficientnet_b0": ({"num_classes": 10}, SIDE),
}
BATCH = 2
CALIBRATION_BATCH = 8  # BN needs several values a channel, even at 1x1 last maps
# The calibration pass runs in train mode, where Inception v3's side classifier (a 5x5/3
# pool, then a 5x5 conv, on Mixed_6e's maps) needs the full 299x299 input.
CALIBRATION_SIDE = {"inception_v3": 299}
SAFETENSORS_COPY = "resnet18"  # also written as .safetensors, to test that path too
SEED = 0


def randomise(model: Any, side: int) -> None:
    """Random biases and BatchNorm affine, then running statistics measured on noise.

    torchvision starts biases at 0 and BN at the identity, so a mapping that swapped two
    same-shaped BN layers or biases would still give the same logits; random values make
    every tensor count. Running statistics drawn at random instead of measured let the
    activations drift by orders of magnitude in deep nets and saturate ReLU6, which hides
    a wrong mapping; measured ones (one train-mode pass, cumulative average) keep every
    layer's output near unit scale.
    """
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.normal_(0, 0.1)
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # running stats = the average over the calibration batch
        model.train()
        model(torch.randn(CALIBRATION_BATCH, 3, side, side))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def write_fixture(name: str, out_dir: Path) -> None:
    """Build ``name`` with random weights, run it once in eval mode, save weights and I/O."""
    import torch
    import torchvision

    kwargs, side = ARCHITECTURES[name]
    torch.manual_seed(SEED)
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    randomise(model, CALIBRATION_SIDE.get(name, side))
    model.eval()
    x = torch.randn(BATCH, 3, side, side)
    with torch.no_grad():
        y = model(x)  # eval mode: the main logits alone, (BATCH, num_classes)
    torch.save(model.state_dict(), out_dir / f"{name}.pth")
    torch.save({"input": x, "logits": y}, out_dir / f"{name}.io.pt")
    if name == SAFETENSORS_COPY:
        write_safetensors(model.state_dict(), out_dir / f"{name}.safetensors")


def write_safetensors(state: dict[str, Any], path: Path) -> None:
    """The same state dict as a safetensors file, when this venv has safetensors."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        print(f"no safetensors in this venv: {path.name} not written", flush=True)
        return
    save_file(state, str(path))


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
