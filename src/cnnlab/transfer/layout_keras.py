"""Keras Applications' ResNet50, VGG16 and MobileNetV2 weights, read with h5py and laid out
for cnnlab's zoo models.

Files. A Keras 3 ``.weights.h5`` keeps each layer under ``layers/<class>_<n>/vars``
(``conv2d_3``: counted by class, not named after the layer), the layer's name in the
group's ``name`` attribute, its variables as datasets ``0``, ``1``, ... A ``.keras`` file
is a zip of ``config.json`` and such a ``model.weights.h5``; when the groups carry no
names (older Keras 3), ``config.json``'s layer list names them, counted as Keras counts.
Keras 2's ``.h5`` (``layer_names``/``weight_names`` attributes: the ImageNet files Keras
downloads) is read too. Nothing in a file is executed (no Keras, no pickle); which
Application it holds is told from its layer names.

Names, Keras layer -> cnnlab module (stage ``s`` 1-4, block ``b`` from 1, ``k`` 1-3):

- ResNet50: ``conv1_conv``/``conv1_bn`` -> ``features.conv1``/``features.bn1``;
  ``conv{s+1}_block{b}_{k}_conv``/``_bn`` -> ``features.layer{s}.{b-1}.conv{k}``/``bn{k}``;
  the shortcut ``conv{s+1}_block1_0_conv``/``_bn`` -> ``features.layer{s}.0.downsample.0``
  /``.1``; ``predictions`` -> ``head.2``.
- VGG16: ``block{n}_conv{k}`` -> ``features.{j}`` at torchvision's indices (a conv, a
  ReLU, a pool between blocks); ``fc1``, ``fc2``, ``predictions`` -> ``head.3``,
  ``head.6``, ``head.9`` (the head's max-pool is Keras's ``block5_pool``).
- MobileNetV2: ``Conv1``/``bn_Conv1`` -> ``features.0.0``/``.1``; block ``i`` 0-16
  (``expanded_conv_`` for 0, else ``block_{i}_``) ``expand``, ``depthwise``, ``project``
  and each one's ``_BN`` -> ``features.{i+1}.conv.{0, 1}``, ``{3, 4}``, ``{6, 7}`` (block 0
  has no expand: ``{0, 1}``, ``{3, 4}``); ``Conv_1``/``Conv_1_bn`` -> ``features.18``/
  ``19``; ``predictions`` -> ``head.3``.

Layouts. Conv kernels are HWIO in Keras, OIHW in PyTorch; depthwise kernels are
(H, W, C, multiplier) against (C * multiplier, 1, H, W); Dense kernels are (in, out)
against Linear's (out, in). BN's gamma, beta, moving mean and variance are PyTorch's
weight, bias, running mean and variance. VGG16's ``Flatten`` reads its (H, W, C) maps in
that order, PyTorch's in (C, H, W): ``fc1``'s rows are permuted, so VGG16 with its top
takes 224x224 inputs only (7x7 maps; cnnlab's 7x7 adaptive pool is then the identity).

Arithmetic. Keras's ResNet50 is ResNet v1: a downsampling block strides its first 1x1
conv, not the 3x3; its convs have biases, which cnnlab's (followed by BN) have not. A
bias ``b`` before BN is folded into the running mean (``mean - b``): exact in eval mode,
and in train mode, where BN subtracts the batch mean anyway. Its BN epsilon is 1.001e-5
and momentum 0.99. MobileNetV2's BN epsilon is 1e-3, its momentum 0.999 (PyTorch's is 1
minus Keras's), and it pads its stride-2 convs as TensorFlow's "same" does (0 before, 1
after on an even side). Keras's VGG16 and MobileNetV2 have no dropout. ``keras_model_args``
gives cnnlab's builder options for all this; with them cnnlab's logits are Keras's
(tests/transfer/test_interop_keras.py).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from cnnlab.core.errors import WeightsError
from cnnlab.models.vgg import VGG_CONFIGS

KERAS_ARCHITECTURES: dict[str, str] = {
    "ResNet50": "resnet50",
    "VGG16": "vgg16",
    "MobileNetV2": "mobilenet_v2",
}

# cnnlab builder options under which each model computes what Keras's does.
_MODEL_ARGS: dict[str, dict[str, Any]] = {
    "resnet50": {"stride_in_1x1": True, "bn_eps": 1.001e-5, "bn_momentum": 0.01},
    "vgg16": {"dropout": 0.0},
    "mobilenet_v2": {"padding": "same", "bn_eps": 1e-3, "bn_momentum": 0.001, "dropout": 0.0},
}
_BN_VARS = ("weight", "bias", "running_mean", "running_var")  # Keras: gamma, beta, mean, var
_SHOWN = 5  # names an error lists
# A layer name only each Keras Application has, checked in order (Xception too has
# ``block1_conv1``); ``{}`` is the ResNet depth, told by the blocks of stage conv4.
_MARKERS = (
    ("block1_conv1_bn", "Xception"),
    ("block5_conv4", "VGG19"),
    ("block1_conv1", "VGG16"),
    ("post_bn", "ResNet{}V2"),
    ("conv2_block1_3_conv", "ResNet{}"),
    ("block_16_project", "MobileNetV2"),
    ("conv_dw_1", "MobileNet"),
    ("pool2_conv", "DenseNet"),
    ("stem_conv", "EfficientNet"),
)


@dataclass(frozen=True)
class KerasWeights:
    """The variables of a Keras model file.

    Attributes:
        layers: Keras layer name -> its variables as NumPy arrays, in Keras's variable
            order (kernel, bias; gamma, beta, moving mean, moving variance). Layers
            without variables are left out.
        architecture: the Keras Applications class the layer names show ("ResNet50",
            "VGG19", ...), or None.
        model_name: the Keras model's name ("resnet50", "mobilenetv2_1.00_224"), if stored.
    """

    layers: dict[str, list[np.ndarray]] = field(repr=False)
    architecture: str | None
    model_name: str | None = None


@dataclass(frozen=True)
class Rule:
    """One Keras layer and the cnnlab module its variables land in.

    Attributes:
        keras: Keras layer name.
        cnnlab: cnnlab module path (state-dict key prefix, without the dot).
        kind: "conv", "depthwise", "dense" or "bn".
        fold_into: cnnlab BN path whose running mean takes this conv's bias.
        flatten: channels of the (H, W, C) maps a Dense layer reads through Flatten.
        top: present only in a model built with ``include_top=True``.
    """

    keras: str
    cnnlab: str
    kind: str
    fold_into: str = ""
    flatten: int = 0
    top: bool = False


def read_keras_weights(path: str | os.PathLike[str]) -> KerasWeights:
    """Read a Keras 3 ``.weights.h5`` or ``.keras`` file (or a Keras 2 ``.h5``) with h5py.

    Args:
        path: the file.

    Returns:
        The per-layer arrays, keyed by Keras layer name, and the architecture they show.

    Raises:
        FileNotFoundError: no such file.
        WeightsError: the file is not a Keras weights file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Keras weights file at {path}")
    config: dict[str, Any] = {}
    source: Path | io.BytesIO = path
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "model.weights.h5" not in names or "config.json" not in names:
                raise WeightsError(
                    f"{path} is a zip but not a .keras file: expected config.json and "
                    f"model.weights.h5, found {', '.join(names[:_SHOWN]) or 'nothing'}"
                )
            config = json.loads(archive.read("config.json"))
            source = io.BytesIO(archive.read("model.weights.h5"))
    try:
        with h5py.File(source, "r") as file:
            layers, model_name = _read_h5(file, config, path)
    except OSError as error:
        raise WeightsError(f"{path} is not an HDF5 (Keras weights) file: {error}") from error
    model_name = model_name or config.get("config", {}).get("name")
    return KerasWeights(layers, _infer_architecture(set(layers)), model_name)


def _read_h5(
    file: h5py.File, config: dict[str, Any], path: Path
) -> tuple[dict[str, list[np.ndarray]], str | None]:
    """Layer name -> arrays, and the model's name, from either Keras's HDF5 layout."""
    legacy = file.get("model_weights", file)
    layers: dict[str, list[np.ndarray]] = {}
    if "layer_names" in legacy.attrs:  # Keras 2: groups named after the layers
        for name in map(_text, legacy.attrs["layer_names"]):
            group = legacy[name]
            arrays = [np.asarray(group[_text(w)]) for w in group.attrs["weight_names"]]
            if arrays:
                layers[name] = arrays
        return layers, None
    if "layers" not in file:
        raise WeightsError(f"{path} holds no Keras layers: expected a 'layers' group")
    fallback = _names_from_config(config)
    for key, variables in _variable_groups(file["layers"], "layers"):
        layer = variables.attrs.get("name") or fallback.get(key)
        if layer is None:
            raise WeightsError(
                f"{path} does not name its layers ({key!r}); read the .keras file, whose "
                "config.json does"
            )
        layers[_text(layer)] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    model_name = file["vars"].attrs.get("name") if "vars" in file else None
    return layers, model_name and _text(model_name)


def _variable_groups(group: h5py.Group, prefix: str) -> Iterator[tuple[str, h5py.Group]]:
    """(path, ``vars`` group) of each layer with variables; nested models recursed into."""
    for key, child in group.items():
        if "vars" in child and len(child["vars"]):
            yield f"{prefix}/{key}", child["vars"]
        if "layers" in child:
            yield from _variable_groups(child["layers"], f"{prefix}/{key}/layers")


def _names_from_config(config: dict[str, Any]) -> dict[str, str]:
    """``layers/<class>_<n>`` -> layer name, counted as Keras 3's saving_lib counts."""
    names: dict[str, str] = {}
    used: dict[str, int] = {}
    for layer in config.get("config", {}).get("layers", []):
        key = re.sub(r"\W+", "", layer["class_name"])
        key = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", key)
        key = re.sub("([a-z])([A-Z])", r"\1_\2", key).lower()
        used[key] = used.get(key, -1) + 1
        names[f"layers/{key}" + (f"_{used[key]}" if used[key] else "")] = layer["config"]["name"]
    return names


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _infer_architecture(names: set[str]) -> str | None:
    """The Keras Applications class whose layer names these are (see ``_MARKERS``), or None."""
    blocks = len({n for n in names if re.fullmatch(r"conv4_block\d+_1_conv", n)})
    depth = {6: 50, 23: 101, 36: 152}.get(blocks, blocks)
    return next((arch.format(depth) for marker, arch in _MARKERS if marker in names), None)


def cnnlab_architecture(weights: KerasWeights) -> str:
    """The cnnlab registry name for the Keras model in ``weights``.

    Raises:
        WeightsError: the file holds an architecture cnnlab does not map (or an unknown
            one); the message names it and lists the ones cnnlab maps.
    """
    mapped = ", ".join(f"{k} -> {v}" for k, v in KERAS_ARCHITECTURES.items())
    if weights.architecture in KERAS_ARCHITECTURES:
        return KERAS_ARCHITECTURES[weights.architecture]
    found = weights.architecture or "an unrecognised architecture"
    some = ", ".join(sorted(weights.layers)[:_SHOWN])
    raise WeightsError(
        f"the Keras file holds {found} (model {weights.model_name!r}, layers {some}, ...); "
        f"cnnlab maps only these Keras Applications: {mapped}"
    )


def keras_model_args(architecture: str) -> dict[str, Any]:
    """Model-builder keyword arguments that make cnnlab's ``architecture`` compute Keras's.

    Args:
        architecture: cnnlab registry name, one of ``KERAS_ARCHITECTURES``'s values.

    Returns:
        e.g. ``{"stride_in_1x1": True, "bn_eps": 1.001e-5, "bn_momentum": 0.01}``.
    """
    if architecture not in _MODEL_ARGS:
        raise WeightsError(
            f"no Keras layout is known for architecture {architecture!r}; "
            f"expected one of: {', '.join(_MODEL_ARGS)}"
        )
    return dict(_MODEL_ARGS[architecture])


def from_keras(
    architecture: str, weights: KerasWeights, target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Keras weights -> a state dict keyed as cnnlab's ``target``.

    Build the model with ``keras_model_args(architecture)`` for Keras's logits.

    Args:
        architecture: cnnlab registry name, one of ``KERAS_ARCHITECTURES``'s values.
        weights: from ``read_keras_weights``.
        target: a cnnlab model's ``state_dict()``, read for its keys and shapes only.

    Returns:
        cnnlab key -> tensor in ``target``'s dtype (it may share memory with ``weights``'
        arrays where the layout is the same). The classifier's tensors come back in
        Keras's shape when its ``num_classes`` differs, for the caller to adapt. A file
        saved with ``include_top=False`` gives no ``head.`` keys.

    Raises:
        WeightsError: the file holds another architecture, or a layer is missing, left
            over or of a shape that does not fit (the message names both sides).
    """
    found = cnnlab_architecture(weights)
    if found != architecture:
        raise WeightsError(
            f"the Keras file holds {weights.architecture} (cnnlab {found!r}); "
            f"received architecture={architecture!r}"
        )
    rules = _RULES[architecture]()
    has_top = any(rule.keras in weights.layers for rule in rules if rule.top)
    rules = [rule for rule in rules if has_top or not rule.top]
    leftover = sorted(set(weights.layers) - {rule.keras for rule in rules})
    if leftover:
        raise WeightsError(
            f"Keras layers with variables that cnnlab's {architecture} has no place for: "
            + ", ".join(leftover[:_SHOWN])
        )
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        out.update(_convert(rule, weights, target, classifier=rule is rules[-1] and has_top))
    for rule in rules:
        if rule.fold_into and len(weights.layers[rule.keras]) > 1:
            mean = f"{rule.fold_into}.running_mean"  # not -=: it shares memory with `weights`
            out[mean] = out[mean] - out.pop(f"{rule.cnnlab}.bias")
    missing = [k for k in target if k not in out and (has_top or not k.startswith("head."))]
    if missing:
        raise WeightsError(
            f"cnnlab keys the Keras {weights.architecture} file leaves without a tensor: "
            + ", ".join(missing[:_SHOWN])
        )
    return out


def _convert(
    rule: Rule, weights: KerasWeights, target: Mapping[str, torch.Tensor], classifier: bool
) -> dict[str, torch.Tensor]:
    """The tensors of one Keras layer, laid out and keyed for cnnlab, shapes checked."""
    arrays = weights.layers.get(rule.keras)
    if arrays is None:
        like = target.get(f"{rule.cnnlab}.weight")
        shape = "" if like is None else f" of shape {tuple(like.shape)}"
        raise WeightsError(
            f"Keras layer {rule.keras!r} is not in the file; cnnlab's "
            f"{rule.cnnlab + '.weight'!r}{shape} needs it"
        )
    names = _BN_VARS if rule.kind == "bn" else ("weight", "bias")
    if len(arrays) not in ((4,) if rule.kind == "bn" else (1, 2)):
        raise WeightsError(
            f"Keras layer {rule.keras!r} has {len(arrays)} variables, too many or too few "
            f"for cnnlab {rule.cnnlab!r} ({rule.kind})"
        )
    out: dict[str, torch.Tensor] = {}
    for name, array in zip(names, arrays, strict=False):
        key = f"{rule.cnnlab}.{name}"
        if rule.fold_into and name == "bias":
            like = target.get(f"{rule.fold_into}.running_mean")
        else:
            like = target.get(key)
        if like is None:
            raise WeightsError(
                f"Keras layer {rule.keras!r} maps to cnnlab key {key!r}, which the model lacks"
            )
        tensor = _relayout(rule, array, name).to(like.dtype)
        expected, got = list(like.shape), list(tensor.shape)
        if classifier and got[1:] == expected[1:]:
            expected[0] = got[0]  # another num_classes: the caller adapts it
        if got != expected:
            raise WeightsError(
                f"Keras layer {rule.keras!r} {name} of shape {array.shape} becomes "
                f"{tuple(tensor.shape)}, but cnnlab's {key!r} has shape {tuple(like.shape)}"
            )
        out[key] = tensor
    counter = f"{rule.cnnlab}.num_batches_tracked"
    if rule.kind == "bn" and counter in target:
        out[counter] = torch.zeros_like(target[counter])  # Keras keeps no step count
    return out


def _relayout(rule: Rule, array: np.ndarray, name: str) -> torch.Tensor:
    """One Keras variable in PyTorch's layout (see the module docstring)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if name != "weight" or rule.kind == "bn":
        return tensor
    if tensor.ndim != (4 if rule.kind in ("conv", "depthwise") else 2):
        raise WeightsError(
            f"Keras layer {rule.keras!r} kernel has shape {array.shape}; expected a "
            f"{rule.kind} kernel for cnnlab {rule.cnnlab!r}"
        )
    if rule.kind == "conv":
        return tensor.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
    if rule.kind == "depthwise":
        h, w, c, m = tensor.shape  # output channel c * m + j, as groups=c numbers them
        return tensor.permute(2, 3, 0, 1).reshape(c * m, 1, h, w)
    if rule.flatten:
        return _unflatten_hwc(rule, tensor)
    return tensor.t().contiguous()  # (in, out) -> (out, in)


def _unflatten_hwc(rule: Rule, kernel: torch.Tensor) -> torch.Tensor:
    """A Dense kernel over (H, W, C)-flattened maps -> a Linear weight over (C, H, W) ones."""
    features, out_features = kernel.shape
    side = math.isqrt(features // rule.flatten)
    if side * side * rule.flatten != features:
        raise WeightsError(
            f"Keras layer {rule.keras!r} kernel has {features} inputs; expected square "
            f"maps of {rule.flatten} channels for cnnlab {rule.cnnlab!r}"
        )
    hwc = kernel.reshape(side, side, rule.flatten, out_features)
    return hwc.permute(3, 2, 0, 1).reshape(out_features, features).contiguous()


def _resnet50_rules() -> list[Rule]:
    rules = [
        Rule("conv1_conv", "features.conv1", "conv", fold_into="features.bn1"),
        Rule("conv1_bn", "features.bn1", "bn"),
    ]
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for block in range(blocks):
            keras, cnnlab = f"conv{stage + 1}_block{block + 1}", f"features.layer{stage}.{block}"
            pairs = [(f"_{k}", f".conv{k}", f".bn{k}") for k in (1, 2, 3)]
            if block == 0:
                pairs.append(("_0", ".downsample.0", ".downsample.1"))
            for suffix, conv, bn in pairs:
                rules.append(Rule(f"{keras}{suffix}_conv", cnnlab + conv, "conv", cnnlab + bn))
                rules.append(Rule(f"{keras}{suffix}_bn", cnnlab + bn, "bn"))
    return [*rules, Rule("predictions", "head.2", "dense", top=True)]


def _vgg16_rules() -> list[Rule]:
    rules, index, block, conv = [], 0, 1, 1
    for v in VGG_CONFIGS["D"][:-1]:  # cnnlab's last max-pool is in the head
        if v == "M":
            index, block, conv = index + 1, block + 1, 1
            continue
        rules.append(Rule(f"block{block}_conv{conv}", f"features.{index}", "conv"))
        index, conv = index + 2, conv + 1  # conv, ReLU
    return [
        *rules,
        Rule("fc1", "head.3", "dense", flatten=512, top=True),
        Rule("fc2", "head.6", "dense", top=True),
        Rule("predictions", "head.9", "dense", top=True),
    ]


def _mobilenet_v2_rules() -> list[Rule]:
    rules = [Rule("Conv1", "features.0.0", "conv"), Rule("bn_Conv1", "features.0.1", "bn")]
    for block in range(17):
        keras = f"block_{block}_" if block else "expanded_conv_"
        parts = [("expand", "conv"), ("depthwise", "depthwise"), ("project", "conv")]
        for index, (part, kind) in enumerate(parts[1:] if block == 0 else parts):
            cnnlab = f"features.{block + 1}.conv.{3 * index}"  # conv, BN, ReLU6 per part
            rules.append(Rule(keras + part, cnnlab, kind))
            rules.append(
                Rule(f"{keras}{part}_BN", f"features.{block + 1}.conv.{3 * index + 1}", "bn")
            )
    return [
        *rules,
        Rule("Conv_1", "features.18", "conv"),
        Rule("Conv_1_bn", "features.19", "bn"),
        Rule("predictions", "head.3", "dense", top=True),
    ]


_RULES = {
    "resnet50": _resnet50_rules,
    "vgg16": _vgg16_rules,
    "mobilenet_v2": _mobilenet_v2_rules,
}
