"""Networks written as specs: a list of layers, shapes inferred, instead of a class.

A spec is a mapping (YAML or JSON file, or a dict)::

    input_shape: [3, 32, 32]        # optional: the data's shape is used when training
    layers:                         # the body: image -> feature maps
      - conv: {out: 32, kernel: 3, padding: same}
      - relu
      - {conv: {out: 32, kernel: 3}, name: c2}
      - maxpool: 2
      - {add: [c2, -1]}             # residual: outputs of named (or relative) layers summed
      - dropout: 0.25
    head:                           # feature maps -> outputs; default: global average
      - flatten                     #   pool, then a linear layer to num_classes
      - linear: 512
      - relu
      - linear: num_classes

Each layer is a name (``relu``) or a one-key mapping ``{kind: args}``; ``args`` is a number
(the main size: channels, units, kernel, probability), a mapping of keyword arguments,
or omitted. Optional keys beside it: ``name`` (to refer to the output later) and ``from``
(take that layer's output instead of the previous one's). ``add`` sums and ``concat``
joins (on channels) the outputs it lists: names, ``input``, or negative positions
(``-1`` the previous layer). Input channels and features are inferred by running a
zero tensor through each layer as it is built. Kinds: ``conv``, ``conv1d``, ``linear``
(``dense``), ``maxpool``, ``avgpool``, ``global_avgpool``, ``global_maxpool``, ``bn``
(``batchnorm``), ``dropout``, ``flatten``, the activations (``relu``, ``leaky_relu``,
``gelu``, ``silu``, ``elu``, ``sigmoid``, ``tanh``), ``add``, ``concat``, and any
module class exported by ``cnnlab.layers`` under its class name (its ``in_channels``
inferred when it takes one). ``num_classes`` as a size means the model's classes.

A spec model is saved with its spec in the ModelRecord, so ``cnnlab.load`` rebuilds it.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.core.records import ModelRecord, set_record
from cnnlab.models.base import Classifier, check_num_classes

Shape = tuple[int, ...]
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
    "elu": nn.ELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
}  # fmt: skip
MAIN = {"conv": "out", "conv1d": "out", "linear": "out", "dense": "out", "maxpool": "kernel",
        "avgpool": "kernel", "dropout": "p", "leaky_relu": "negative_slope"}  # fmt: skip


def read_spec(source: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """A spec from a YAML/JSON file or a mapping (copied), checked for its keys."""
    if isinstance(source, dict):
        spec = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"spec file {path} does not exist")
        text = path.read_text()
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise ConfigError(
            f"Expected a spec mapping with a non-empty 'layers' list, received {spec!r:.200}"
        )
    unknown = set(spec) - {"layers", "head", "input_shape", "name", "num_classes"}
    if unknown:
        raise ConfigError(
            f"Expected spec keys layers, head, input_shape, name, num_classes; received {sorted(unknown)}"
        )
    return spec


def is_spec_path(name: str) -> bool:
    return str(name).endswith(SPEC_SUFFIXES)


def _parse(entry: Any) -> tuple[str, Any, dict[str, Any]]:
    """(kind, args, extras {name, from}) of one layer entry."""
    if isinstance(entry, str):
        return entry, None, {}
    if isinstance(entry, dict):
        extras = {k: entry[k] for k in ("name", "from") if k in entry}
        kinds = [k for k in entry if k not in ("name", "from")]
        if len(kinds) == 1:
            return kinds[0], entry[kinds[0]], extras
    raise ConfigError(f"Expected a layer as a name or {{kind: args}}, received {entry!r}")


def _kwargs(kind: str, args: Any, num_classes: int) -> dict[str, Any]:
    if args is None:
        out: dict[str, Any] = {}
    elif isinstance(args, dict):
        out = dict(args)
    elif kind in MAIN:
        out = {MAIN[kind]: args}
    else:
        raise ConfigError(f"layer kind {kind!r} takes a mapping of arguments, received {args!r}")
    return {k: (num_classes if v == "num_classes" else v) for k, v in out.items()}


def _layer(kind: str, kw: dict[str, Any], shape: Shape) -> nn.Module:
    """Build one layer of ``kind`` for inputs of ``shape`` (without the batch axis)."""
    c = shape[0]
    if kind in ("conv", "conv1d"):
        conv = nn.Conv2d if kind == "conv" else nn.Conv1d
        kw = {"kernel_size": kw.pop("kernel", 3), "out_channels": kw.pop("out"), **kw}
        return conv(c, **kw)
    if kind in ("linear", "dense"):
        return nn.Linear(shape[-1], kw.pop("out"), **kw)
    if kind in ("maxpool", "avgpool"):
        two_d = len(shape) == 3
        pools = {"maxpool": (nn.MaxPool2d, nn.MaxPool1d), "avgpool": (nn.AvgPool2d, nn.AvgPool1d)}
        return pools[kind][0 if two_d else 1](kernel_size=kw.pop("kernel", 2), **kw)
    if kind in ("global_avgpool", "global_maxpool"):
        pool = {"global_avgpool": nn.AdaptiveAvgPool2d, "global_maxpool": nn.AdaptiveMaxPool2d}[
            kind
        ]
        return nn.Sequential(pool(1), nn.Flatten())
    if kind in ("bn", "batchnorm"):
        return (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(c, **kw)
    if kind == "dropout":
        return nn.Dropout(**kw)
    if kind == "flatten":
        return nn.Flatten()
    if kind in ACTIVATIONS:
        return ACTIVATIONS[kind](**kw)
    import cnnlab.layers as layers

    cls = getattr(layers, kind, None)
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        known = sorted({*MAIN, "global_avgpool", "global_maxpool", "bn", "flatten", "add",
                        "concat", *ACTIVATIONS})  # fmt: skip
        raise ConfigError(
            f"Expected a layer kind in {known} or a cnnlab.layers class, received {kind!r}"
        )
    if "in_channels" in inspect.signature(cls).parameters and "in_channels" not in kw:
        kw["in_channels"] = c
    return cls(**kw)


class SpecGraph(nn.Module):
    """The layers of a spec, run in order; ``add``/``concat`` read earlier outputs."""

    output_shape: Shape

    def __init__(
        self, entries: list[Any], input_shape: Shape, num_classes: int, start: int = 0
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        self.plan: list[tuple[str, Any]] = []  # ("module", from) | ("add"/"concat", sources)
        names: dict[str, int] = {"input": -1}
        shapes: list[Shape] = []
        shape = input_shape
        for i, entry in enumerate(entries):
            kind, args, extras = _parse(entry)
            label = f"layer {start + i} ({kind}{' ' + repr(extras['name']) if 'name' in extras else ''})"

            def position(ref: Any, label: str = label, i: int = i) -> int:
                if isinstance(ref, int) and -i - 1 <= ref < 0:
                    return i + ref if ref != -i - 1 else -1
                if isinstance(ref, str) and ref in names:
                    return names[ref]
                raise ConfigError(
                    f"spec {label}: Expected a name of an earlier layer, 'input' or -1..-{i + 1}, received {ref!r}"
                )

            def shape_of(p: int) -> Shape:
                return input_shape if p == -1 else shapes[p]

            if kind in ("add", "concat"):
                if not isinstance(args, list) or len(args) < 2:
                    raise ConfigError(
                        f"spec {label}: Expected a list of two or more layers to {kind}, received {args!r}"
                    )
                sources = [position(r) for r in args]
                inputs = [shape_of(p) for p in sources]
                ok = len(set(inputs)) == 1 if kind == "add" else len({s[1:] for s in inputs}) == 1
                if not ok:
                    raise ConfigError(f"spec {label}: cannot {kind} outputs of shapes {inputs}")
                shape = inputs[0] if kind == "add" else (sum(s[0] for s in inputs), *inputs[0][1:])
                self.plan.append((kind, sources))
                self.layers.append(nn.Identity())
            else:
                source = position(extras["from"]) if "from" in extras else i - 1
                incoming = shape_of(source)
                try:
                    module = _layer(kind, _kwargs(kind, args, num_classes), incoming)
                    with torch.no_grad():
                        shape = tuple(module.eval()(torch.zeros(2, *incoming)).shape[1:])
                except ConfigError as e:
                    raise ConfigError(f"spec {label}: {e}") from None
                except (TypeError, ValueError, RuntimeError, KeyError) as e:
                    raise ConfigError(
                        f"spec {label}: input shape {incoming}: {e}".splitlines()[0]
                    ) from None
                module.train()
                self.plan.append(("module", source))
                self.layers.append(module)
            if "name" in extras:
                names[str(extras["name"])] = i
            shapes.append(shape)
        self.output_shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        for (kind, source), module in zip(self.plan, self.layers, strict=True):
            if kind == "module":
                y = module(x if source == -1 else outputs[source]) if outputs else module(x)
            elif kind == "add":
                y = sum(
                    (x if p == -1 else outputs[p] for p in source[1:]),
                    x if source[0] == -1 else outputs[source[0]],
                )
            else:
                y = torch.cat([x if p == -1 else outputs[p] for p in source], dim=1)
            outputs.append(y)
        return outputs[-1]


class SpecNet(Classifier):
    """A network built from a spec (see the module docstring)."""

    body_shape: Shape  # the body's output shape: what the head takes

    def __init__(
        self, spec: dict[str, Any], in_channels: int | None = None, num_classes: int | None = None,
        input_size: int | list[int] | tuple[int, ...] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.spec = read_spec(spec)
        shape = tuple(self.spec.get("input_shape") or ())
        if in_channels is not None or input_size is not None:
            size = (
                [input_size] * 2 if isinstance(input_size, int) else list(input_size or shape[1:])
            )
            shape = (in_channels or (shape[0] if shape else 1), *size)
        if not shape:
            raise ConfigError("a spec network needs its input_shape (in the spec, or the data's)")
        self.input_shape, self.in_channels = shape, shape[0]
        self.num_classes = int(num_classes or self.spec.get("num_classes") or 10)
        check_num_classes(self.num_classes)
        body = SpecGraph(self.spec["layers"], shape, self.num_classes)
        self.body_shape = body.output_shape
        self.features = body
        self.head = self._make_head(self.num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        entries = self.spec.get("head") or ["global_avgpool", {"linear": "num_classes"}]
        return SpecGraph(entries, self.body_shape, num_classes, start=len(self.spec["layers"]))


SPEC = "spec"  # the "architecture" a spec model's record names; model_args hold the spec


def from_spec(spec: str | os.PathLike[str] | dict[str, Any], **kwargs: Any) -> SpecNet:
    """Build a network from a spec file or mapping; ``in_channels``, ``num_classes`` and
    ``input_size`` override the spec's. The record keeps the spec, so it saves and loads."""
    mapping = read_spec(spec)
    model = SpecNet(mapping, **kwargs)
    args = json.loads(json.dumps({"spec": mapping, **kwargs}))
    set_record(model, ModelRecord(architecture=SPEC, model_args=args))
    return model
