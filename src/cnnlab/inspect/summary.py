"""Per-layer model summary: output shape and parameters, from one traced forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerRow:
    """One leaf module as the forward pass met it."""

    name: str  # dotted path in the model, e.g. "features.0"
    kind: str  # class name, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int  # parameters owned directly by this module
    trainable: int


def summary(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """Run one image of ``input_shape`` (C, H, W) through ``model``; one row per leaf call.

    A module called twice (weight sharing) appears twice but its parameters are
    counted once.
    """
    rows: list[LayerRow] = []
    counted: set[int] = set()
    hooks = []

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, _inputs: object, output: object) -> None:
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            own = list(module.parameters(recurse=False))
            new = [p for p in own if id(p) not in counted]
            counted.update(id(p) for p in new)
            rows.append(
                LayerRow(
                    name,
                    type(module).__name__,
                    shape,
                    sum(p.numel() for p in new),
                    sum(p.numel() for p in new if p.requires_grad),
                )
            )

        return hook

    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def format_summary(rows: list[LayerRow], model: nn.Module) -> str:
    """A readable table with totals."""
    lines = [f"{'layer':<28} {'type':<18} {'output shape':<20} {'params':>12}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        shape = "x".join(str(s) for s in r.output_shape)
        lines.append(f"{r.name:<28} {r.kind:<18} {shape:<20} {r.params:>12,}")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append("-" * len(lines[0]))
    lines.append(
        f"total params: {total:,}  trainable: {trainable:,}  frozen: {total - trainable:,}"
    )
    lines.append(f"size: {total * 4 / 2**20:.2f} MB at fp32")
    return "\n".join(lines)
