"""Pretrained weights into a cnnlab model: read a source, find its layout, adapt, report.

A source is a saved cnnlab model or run folder, a ``.safetensors`` file, a PyTorch
``.pth``/``.pt``/``.bin`` state dict (read with ``weights_only=True``: nothing in it can
run), or a Keras ``.weights.h5``/``.keras`` file. Its tensors are matched to the model's
by name, in the first layout that fits:

1. cnnlab's own names (a run of the same architecture);
2. torchvision's names for the same architecture (``layout_torchvision``);
3. Keras Applications' layer names (``layout_keras``);
4. a classifier's body inside a dense model: ``features.X`` -> ``features.body.X``, the
   backbone of FCN, DeepLab, PSPNet, FCOS and SSD.

Then every tensor of the model is either **loaded** (same name and shape), **adapted**
(the first conv when the channel count differs, see :func:`adapt_first_conv`) or **new**
(left as initialised: a head for another number of classes, or a part the source lacks).
Any other shape difference is an error naming every such tensor with both shapes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import CheckpointError, WeightsError
from cnnlab.core.io import load_tensors
from cnnlab.core.records import record_of
from cnnlab.core.rundir import RunDir

State = dict[str, torch.Tensor]
FIRST_CONV_RULES = ("adapt", "new")
KERAS_SUFFIXES = (".h5", ".keras")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
# Wrappers around a state dict: DistributedDataParallel's and torch.compile's.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
BACKBONE_PREFIX = ("features.", "features.body.")  # classifier body -> FeaturePyramid body


@dataclass
class TransferReport:
    """What a load did to each of the model's tensors, and what the source had left over."""

    source: str
    layout: str  # "cnnlab", "torchvision", "keras" or "backbone"
    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)  # model key -> how
    new: dict[str, str] = field(default_factory=dict)  # model key -> why
    unused: list[str] = field(default_factory=list)  # source keys the model has no place for

    def summary(self) -> str:
        """One line: counts, then what was adapted or left new (first few of each)."""
        parts = [f"{len(self.loaded)} loaded"]
        if self.adapted:
            parts.append(f"{len(self.adapted)} adapted ({_few(self.adapted)})")
        if self.new:
            parts.append(f"{len(self.new)} new ({_few(self.new)})")
        if self.unused:
            parts.append(f"{len(self.unused)} in the source unused")
        return f"weights from {self.source} ({self.layout} layout): " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "layout": self.layout, "loaded": self.loaded,
            "adapted": self.adapted, "new": self.new, "unused": self.unused,
        }  # fmt: skip


def _few(named: Mapping[str, str], n: int = 3) -> str:
    items = [f"{k}: {v}" for k, v in list(named.items())[:n]]
    return "; ".join(items) + ("; ..." if len(named) > n else "")


# -- reading ---------------------------------------------------------------------------------


@dataclass
class Source:
    """A weights source read into memory: tensors by name, or Keras layers to convert."""

    path: Path
    tensors: State | None = None
    keras: Any = None  # layout_keras.KerasWeights
    classes: list[str] | None = None  # the classes of a saved cnnlab model


def read_source(source: str | os.PathLike[str]) -> Source:
    """Read ``source`` (see the module docstring); errors name the path and what it lacks.

    Raises:
        CheckpointError: missing, unreadable or damaged files.
        WeightsError: a file that is not a state dict, or an ensemble folder.
    """
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: not found; expected a saved model or run folder, a .safetensors, "
            f".pth/.pt/.bin or Keras .weights.h5/.keras file"
        )
    name = path.name.lower()
    if name.endswith(KERAS_SUFFIXES):
        from cnnlab.transfer.layout_keras import read_keras_weights

        return Source(path, keras=read_keras_weights(path))
    if name.endswith(".safetensors"):
        return Source(path, _strip_wrappers(_read_safetensors(path)))
    if name.endswith(TORCH_SUFFIXES):
        return Source(path, _strip_wrappers(_read_torch(path)))
    raise WeightsError(
        f"{path}: unknown weights format {path.suffix!r}; expected .safetensors, "
        f"{'/'.join(TORCH_SUFFIXES)}, or Keras {'/'.join(KERAS_SUFFIXES)}"
    )


def _read_folder(path: Path) -> Source:
    files = RunDir.of(path)
    if not files.weights.is_file():
        raise CheckpointError(
            f"{path}: no {files.weights.name}; expected a saved cnnlab model or run folder"
        )
    from cnnlab.models.saved import read_record

    record = read_record(path)
    if record.architecture == "ensemble":
        raise WeightsError(
            f"{path} holds an ensemble; take the weights of one member, e.g. {files.member(0).root}"
        )
    tensors, _ = load_tensors(files.weights)
    return Source(path, tensors, classes=record.classes)


def _read_safetensors(path: Path) -> State:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _read_torch(path: Path) -> State:
    """A pickled state dict, read with ``weights_only=True`` (tensors and containers only)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path}: not a plain state dict that loads with weights_only=True ({first})"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path}: expected a state dict (names -> tensors), received {type(obj).__name__}"
        )
    return {str(k): v for k, v in obj.items()}


def _strip_wrappers(state: State) -> State:
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


# -- matching --------------------------------------------------------------------------------


def match_layout(source: Source, architecture: str, target: State) -> tuple[State, str]:
    """The source's tensors renamed to the model's keys, and the layout that fitted."""
    if source.keras is not None:
        from cnnlab.transfer.layout_keras import from_keras

        return from_keras(architecture, source.keras, target), "keras"
    assert source.tensors is not None
    state = source.tensors
    if _overlap(state, target) >= 0.5:
        return state, "cnnlab"
    from cnnlab.transfer import layout_torchvision as tv

    if architecture in tv.TORCHVISION_ARCHITECTURES and tv.is_torchvision_layout(
        architecture, state
    ):
        return tv.from_torchvision(architecture, state, target), "torchvision"
    old, new = BACKBONE_PREFIX
    moved = {new + k[len(old) :]: v for k, v in state.items() if k.startswith(old)}
    if moved and _overlap(moved, target) >= 0.5:
        return moved, "backbone"
    raise WeightsError(
        f"{source.path}: its tensor names fit no layout of {architecture!r} "
        f"(cnnlab, torchvision, or a classifier body as a backbone); source names begin "
        f"{sorted(state)[:3]}, the model's {sorted(target)[:3]}"
    )


def _overlap(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    """Fraction of the source's names that the model has."""
    return len(state.keys() & target.keys()) / max(len(state), 1)


# -- adapting --------------------------------------------------------------------------------


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first conv's filters (O, C, kh, kw) for ``in_channels`` input channels.

    One channel: the sum over the source's channels, so a grey image gives the response
    its copy into every channel gave. More channels, or fewer than the source but more
    than one: the source's channels repeated in turn and scaled by C / in_channels, so
    the response to an image whose channels are all equal keeps its size.
    """
    c = weight.shape[1]
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_channels) % c
    return weight[:, index] * (c / in_channels)


def first_conv_key(model: nn.Module) -> str | None:
    """The weight name of the first 2-D/1-D conv in ``model``'s parameter order."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Conv1d) and module.groups == 1:
            return f"{name}.weight" if name else "weight"
    return None


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Where the class-dependent layers live: ``head.`` for the zoo's classifiers and
    segmenters (and their twins inside an ensemble member)."""
    return ("head.",) if hasattr(model, "head") else ()


def merge(
    model: nn.Module,
    state: State,
    *,
    first_conv: str = "adapt",
    new_head: bool = False,
    source: str = "",
    layout: str = "",
) -> tuple[State, TransferReport]:
    """The model's state dict with ``state``'s tensors in it, and what happened to each.

    ``new_head``: leave the head as initialised even where its shape fits (the source's
    classes are other classes).

    Raises:
        WeightsError: tensors whose shapes differ outside the head and first conv (all
            named, with both shapes and the option that would adapt them).
    """
    if first_conv not in FIRST_CONV_RULES:
        raise WeightsError(
            f"Expected first_conv in {FIRST_CONV_RULES}, received first_conv={first_conv!r}"
        )
    target = model.state_dict()
    report = TransferReport(source=source, layout=layout)
    report.unused = sorted(state.keys() - target.keys())
    conv, heads = first_conv_key(model), head_prefixes(model)
    merged, wrong = dict(target), []
    for key, mine in target.items():
        theirs = state.get(key)
        if theirs is None:
            report.new[key] = "not in the source"
        elif new_head and key.startswith(heads):
            report.new[key] = "head for other classes"
        elif theirs.shape == mine.shape:
            merged[key] = theirs.to(mine.dtype)
            report.loaded.append(key)
        elif key == conv and _only_channels_differ(theirs, mine) and first_conv == "adapt":
            merged[key] = adapt_first_conv(theirs.to(mine.dtype), mine.shape[1])
            how = "sum over" if mine.shape[1] == 1 else "repeated from"
            report.adapted[key] = f"{how} {theirs.shape[1]} input channels -> {mine.shape[1]}"
        elif key.startswith(heads) or (key == conv and first_conv == "new"):
            report.new[key] = f"source {tuple(theirs.shape)}, model {tuple(mine.shape)}"
        else:
            wrong.append(f"{key}: source {tuple(theirs.shape)}, model {tuple(mine.shape)}")
    if wrong:
        hint = (
            "the first conv adapts with first_conv='adapt'; "
            if conv and any(w.startswith(f"{conv}:") for w in wrong)
            else ""
        )
        raise WeightsError(
            f"{source}: {len(wrong)} tensor(s) do not fit the model ({layout or 'cnnlab'} layout): "
            + "; ".join(wrong)
            + f". Only the head (num_classes) and the first conv (in_channels) adapt: {hint}"
            "build the model with the source's other sizes to load these"
        )
    if not report.loaded:
        raise WeightsError(f"{source}: no tensor of the source fits the model")
    return merged, report


def _only_channels_differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dim() == b.dim() and a.shape[0] == b.shape[0] and a.shape[2:] == b.shape[2:]


def load_weights(
    model: nn.Module,
    source: str | os.PathLike[str] | Source,
    *,
    first_conv: str = "adapt",
    new_head: bool = False,
    architecture: str | None = None,
) -> TransferReport:
    """Load pretrained weights from ``source`` into ``model`` in place; returns the report.

    ``architecture`` is the model's registry name (default: its record's); ``new_head``
    leaves the head as initialised even when its shape fits (other classes).

    Raises:
        CheckpointError: the source cannot be read.
        WeightsError: nothing fits, or tensors outside the head and first conv differ.
    """
    read = source if isinstance(source, Source) else read_source(source)
    record = record_of(model)
    name = architecture or (record.architecture if record is not None else "")
    target = model.state_dict()
    state, layout = match_layout(read, name, target)
    merged, report = merge(
        model, state, first_conv=first_conv, new_head=new_head, source=str(read.path),
        layout=layout,
    )  # fmt: skip
    model.load_state_dict(merged)
    return report
