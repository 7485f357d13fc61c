"""Per-layer model summary: shapes, parameters, MACs, memory and receptive field from one forward.

What is counted, per leaf module (one row per call):

- MACs (multiply-accumulates) only for convolutions and ``Linear``, exactly from the
  shapes: a conv output element costs ``(in_channels / groups) * prod(kernel_size)``
  MACs, a ``Linear`` output ``in_features``. Bias adds, BatchNorm, activations,
  pooling and non-module ops (``out + identity``) are ignored, as in torchvision's
  published "GFLOPS" (which are MACs). FLOPs = 2 * MACs.
- Activation memory: output elements * bytes per element, for one sample.
- Receptive field (``rf``) and effective stride (``jump``) of the layer's output,
  in input pixels along the first spatial axis: for a conv or pool,
  ``rf_out = rf_in + (k - 1) * dilation * jump_in`` and ``jump_out = jump_in * stride``;
  other layers pass theirs through. Each output tensor's (rf, jump) is remembered by
  ``id``; a layer with several inputs takes the largest. A tensor made outside any
  module (``out + identity``, ``torch.cat``) is unknown: it is given the largest
  (rf, jump) seen so far, which is the deepest branch's in residual and inception
  blocks but can overstate the rf of a model whose branches are later merged by a
  non-module op and then read by a shallow layer. An in-place op (``out += identity``)
  keeps the tensor's id, so the result keeps the rf recorded for ``out``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


@dataclass
class LayerRow:
    """One leaf module as the forward pass met it (sizes for one sample)."""

    name: str  # dotted path in the model, e.g. "features.0"
    kind: str  # class name, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int  # parameters owned directly by this module, counted at first call only
    trainable: int
    macs: int = 0  # multiply-accumulates for one sample; conv and linear only
    activation_bytes: int = 0  # output elements * element size
    rf: int = 1  # receptive field of one output pixel, in input pixels
    jump: int = 1  # distance in input pixels between neighbouring output pixels

    @property
    def frozen(self) -> int:
        return self.params - self.trainable

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _first(value: int | tuple[int, ...]) -> int:
    return value if isinstance(value, int) else value[0]


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs for one sample of ``output`` (batch first); 0 for layers we do not count."""
    per_sample = output[0].numel() if output.dim() > 1 else output.numel()
    if isinstance(module, CONVS):
        kernel = math.prod(module.kernel_size)
        return per_sample * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    return 0


def next_rf(module: nn.Module, rf: int, jump: int) -> tuple[int, int]:
    """(rf, jump) after ``module``, given them at its input."""
    if not isinstance(module, CONVS + POOLS):
        return rf, jump
    kernel = _first(module.kernel_size)
    stride = _first(module.stride or kernel)  # pools default stride to the kernel
    dilation = _first(getattr(module, "dilation", 1))
    return rf + (kernel - 1) * dilation * jump, jump * stride


class _Tracer:
    """Forward hooks that fill one row per leaf call and track (rf, jump) per tensor."""

    def __init__(self) -> None:
        self.rows: list[LayerRow] = []
        self.counted: set[int] = set()
        # id(tensor) -> (tensor, rf, jump); the tensor is kept so its id is not reused
        self.fields: dict[int, tuple[torch.Tensor, int, int]] = {}
        self.deepest = (1, 1)  # largest (rf, jump) met so far: the fallback for unknowns

    def mark(self, tensor: torch.Tensor, rf: int, jump: int) -> None:
        self.fields[id(tensor)] = (tensor, rf, jump)
        self.deepest = max(self.deepest, (rf, jump))

    def field_of(self, tensor: torch.Tensor) -> tuple[torch.Tensor, int, int] | None:
        """What is known of ``tensor``, or of the tensor it is a view of (a transpose
        between two layers, as a text CNN makes of its embeddings)."""
        found = self.fields.get(id(tensor))
        if found is None and tensor._base is not None:
            found = self.fields.get(id(tensor._base))
        return found

    def rf_of(self, inputs: tuple[Any, ...]) -> tuple[int, int]:
        known = [self.field_of(t) for t in inputs if isinstance(t, torch.Tensor)]
        if not known or any(k is None for k in known):
            return self.deepest
        return max((k[1], k[2]) for k in known if k is not None)

    def hook(self, name: str):  # type: ignore[no-untyped-def]
        def record(module: nn.Module, inputs: tuple[Any, ...], output: object) -> None:
            new = [p for p in module.parameters(recurse=False) if id(p) not in self.counted]
            self.counted.update(id(p) for p in new)
            row = LayerRow(
                name,
                type(module).__name__,
                (),
                sum(p.numel() for p in new),
                sum(p.numel() for p in new if p.requires_grad),
            )
            row.rf, row.jump = next_rf(module, *self.rf_of(inputs))
            if isinstance(output, torch.Tensor):
                row.output_shape = tuple(output.shape[1:])
                row.macs = layer_macs(module, output)
                row.activation_bytes = output[0].numel() * output.element_size()
                self.mark(output, row.rf, row.jump)
            self.rows.append(row)

        return record


def summary(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerRow]:
    """Run one sample of ``input_shape`` (C, H, W), (C, L) or (L,) through ``model``; one row
    per leaf call.

    A module called twice (weight sharing) appears twice, with its MACs counted
    twice but its parameters once. Every layer output stays alive until the end
    of the pass (so tensor ids are not reused), which costs the training
    activation memory of one sample; build the model on the meta device
    (``with torch.device("meta")``) to get every count without arithmetic or memory.
    """
    tracer = _Tracer()
    hooks = [
        module.register_forward_hook(tracer.hook(name))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    was_training = model.training
    param = next(model.parameters(), None)
    # Token models (Kim's CNN, WaveNet) declare ``input_dtype = torch.int64``: ids, not pixels.
    dtype = getattr(model, "input_dtype", torch.float32)
    x = torch.zeros(
        1, *input_shape, dtype=dtype, device=param.device if param is not None else None
    )
    tracer.mark(x, 1, 1)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return tracer.rows


def totals(rows: list[LayerRow], model: nn.Module, batch_size: int = 1) -> dict[str, Any]:
    """Model-wide counts and seed 001's memory rule, for ``batch_size`` samples.

    Inference keeps only two consecutive layers' outputs alive, so its activation
    memory is the largest sum over neighbouring rows; training keeps every output
    for the backward pass, so it is their sum. Parameter memory is fp32; training
    adds, per trainable parameter, a gradient and Adam's two moments (3 x 4 bytes;
    SGD with momentum needs 2 x 4).
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1, received batch_size={batch_size}")
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    outputs = [r.activation_bytes for r in rows]
    pairs = [a + b for a, b in itertools.pairwise(outputs)] or outputs or [0]
    inference_activations = max(pairs) * batch_size
    training_activations = sum(outputs) * batch_size
    macs = sum(r.macs for r in rows)
    return {
        "params": params,
        "trainable": trainable,
        "frozen": params - trainable,
        "size_mb_fp32": params * 4 / 2**20,
        "size_mb_bf16": params * 2 / 2**20,
        "macs": macs * batch_size,
        "flops": 2 * macs * batch_size,
        "batch_size": batch_size,
        "inference_activation_bytes": inference_activations,
        "training_activation_bytes": training_activations,
        "inference_bytes": inference_activations + params * 4,
        "training_bytes": training_activations + params * 4 + trainable * 4 * 3,
    }


def group_rows(rows: list[LayerRow], model: nn.Module, depth: int) -> list[LayerRow]:
    """Merge rows by the first ``depth`` parts of their names, in order of first call.

    A group sums params, MACs and activation memory, keeps its last output shape
    and its largest receptive field, and is named after the module at that path.
    """
    if depth < 1:
        raise ValueError(f"Expected depth >= 1, received depth={depth}")
    modules = dict(model.named_modules())
    groups: dict[str, LayerRow] = {}
    for r in rows:
        key = ".".join(r.name.split(".")[:depth])
        g = groups.get(key)
        if g is None:
            groups[key] = LayerRow(key, type(modules.get(key, model)).__name__, (), 0, 0)
            g = groups[key]
        g.output_shape = r.output_shape
        g.params += r.params
        g.trainable += r.trainable
        g.macs += r.macs
        g.activation_bytes += r.activation_bytes
        g.rf, g.jump = max((g.rf, g.jump), (r.rf, r.jump))
    return list(groups.values())


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def format_summary(
    rows: list[LayerRow], model: nn.Module, depth: int | None = None, batch_size: int = 1
) -> str:
    """A readable table, optionally grouped to ``depth`` name parts, with totals."""
    shown = group_rows(rows, model, depth) if depth else rows
    header = (
        f"{'layer':<28} {'type':<18} {'output shape':<16} {'params':>12} "
        f"{'MACs':>9} {'act mem':>9} {'rf':>5} {'jump':>4}"
    )
    lines = [header, "-" * len(header)]
    for r in shown:
        shape = "x".join(str(s) for s in r.output_shape)
        lines.append(
            f"{r.name:<28} {r.kind:<18} {shape:<16} {r.params:>12,} "
            f"{_si(r.macs):>9} {_si(r.activation_bytes) + 'B':>9} {r.rf:>5} {r.jump:>4}"
        )
    t = totals(rows, model, batch_size)
    lines.append("-" * len(header))
    lines.append(
        f"total params: {t['params']:,}  trainable: {t['trainable']:,}  frozen: {t['frozen']:,}"
    )
    lines.append(f"size: {t['size_mb_fp32']:.2f} MB at fp32, {t['size_mb_bf16']:.2f} MB at bf16")
    lines.append(
        f"batch {batch_size}: {_si(t['macs'])} MACs = {_si(t['flops'])} FLOPs; "
        f"activations {t['inference_activation_bytes'] / 2**20:.2f} MB inference, "
        f"{t['training_activation_bytes'] / 2**20:.2f} MB training"
    )
    lines.append(
        f"with parameters: {t['inference_bytes'] / 2**20:.2f} MB inference, "
        f"{t['training_bytes'] / 2**20:.2f} MB training (fp32, Adam: grad + 2 moments)"
    )
    return "\n".join(lines)
