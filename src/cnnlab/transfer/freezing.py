"""Freeze and unfreeze parts of a model by name, gradually, with learning rates per part.

Parts are named by a **selector**, one string:

- a shell pattern over parameter names: ``"features.conv1.*"``, ``"*.bn*"``;
- a module name: ``"features"``, ``"features.layer3"`` (every parameter under it);
- a range of a module's children, by position: ``"features.0-2"`` (children 0, 1 and 2
  of ``features``, whatever their names), ``"features.3-"`` (3 to the last);
- several of these separated by commas.

``freeze_until(model, "features.layer3")`` freezes every parameter that comes before that
module in the model's parameter order (its stem and earlier stages). Gradual unfreezing
(ULMFiT, Howard & Ruder 2018) thaws the frozen part one stage at a time from the top,
every ``every`` epochs; discriminative learning rates give each part its own multiple of
the base rate through optimizer parameter groups.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence

from torch import nn

from cnnlab.core.errors import ConfigError

_RANGE = re.compile(r"^(?P<module>.+)\.(?P<start>\d+)-(?P<stop>\d*)$")
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def select(model: nn.Module, selector: str | Sequence[str]) -> list[str]:
    """Names of ``model``'s parameters that ``selector`` picks, in parameter order.

    Raises:
        ConfigError: a part of the selector matches nothing (the message lists the
            model's top-level modules and the children of the one it named).
    """
    parts = [selector] if isinstance(selector, str) else list(selector)
    parts = [p.strip() for part in parts for p in part.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"Expected a non-empty selector, received {selector!r}")
    names = [name for name, _ in model.named_parameters()]
    chosen: set[str] = set()
    for part in parts:
        found = _select_one(model, names, part)
        if not found:
            raise ConfigError(f"selector {part!r} matches no parameter; {_where(model, part)}")
        chosen |= set(found)
    return [n for n in names if n in chosen]


def _select_one(model: nn.Module, names: list[str], part: str) -> list[str]:
    ranged = _RANGE.match(part)
    if ranged:
        children = _children(model, ranged["module"])
        start = int(ranged["start"])
        stop = int(ranged["stop"]) if ranged["stop"] else len(children) - 1
        if not 0 <= start <= stop < len(children):
            return []
        prefixes = tuple(f"{ranged['module']}.{c}." for c in children[start : stop + 1])
        return [n for n in names if n.startswith(prefixes)]
    if any(ch in part for ch in "*?["):
        return [n for n in names if fnmatch.fnmatchcase(n, part)]
    return [n for n in names if n == part or n.startswith(part + ".")]


def _children(model: nn.Module, module: str) -> list[str]:
    try:
        parent = model.get_submodule(module)
    except AttributeError:
        return []
    return [name for name, _ in parent.named_children()]


def _where(model: nn.Module, part: str) -> str:
    """A hint of what the model does have, near where ``part`` looked."""
    top = [name for name, _ in model.named_children()]
    ranged = _RANGE.match(part)
    base = ranged["module"] if ranged else part.split(".")[0]
    children = _children(model, base)
    hint = f"the model's modules are {top}"
    if children:
        hint += f"; {base!r} has children {children} (0-{len(children) - 1} by position)"
    return hint


def freeze(model: nn.Module, selector: str | Sequence[str]) -> list[str]:
    """Turn off requires_grad on the parameters ``selector`` picks; returns their names."""
    names = select(model, selector)
    _set_grad(model, names, False)
    return names


def unfreeze(model: nn.Module, selector: str | Sequence[str] = "*") -> list[str]:
    """Turn requires_grad back on for the parameters ``selector`` picks (default: all)."""
    names = select(model, selector)
    _set_grad(model, names, True)
    return names


def freeze_until(model: nn.Module, module: str) -> list[str]:
    """Freeze every parameter before the module ``module`` (in parameter order)."""
    names = [name for name, _ in model.named_parameters()]
    first = select(model, module)[0]
    before = names[: names.index(first)]
    if not before:
        raise ConfigError(f"freeze_until={module!r}: no parameter comes before it")
    _set_grad(model, before, False)
    return before


def _set_grad(model: nn.Module, names: Iterable[str], on: bool) -> None:
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(on)


def frozen_norm_layers(model: nn.Module) -> list[nn.Module]:
    """BatchNorm layers whose parameters are all frozen (or that have none)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, NORM_LAYERS) and not any(p.requires_grad for p in m.parameters())
    ]


def keep_frozen_norms_eval(model: nn.Module) -> int:
    """Put frozen BatchNorm layers in eval mode (after ``model.train()``), so their running
    statistics stay the pretrained ones; returns how many."""
    layers = frozen_norm_layers(model)
    for layer in layers:
        layer.eval()
    return len(layers)


def stages(model: nn.Module, names: Sequence[str]) -> list[list[str]]:
    """``names`` grouped by the top-level child of the module that holds them, in order
    (``features.layer1.0.conv1.weight`` -> the group of ``features.layer1``)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        head, _, rest = name.partition(".")
        child = rest.split(".")[0] if rest and hasattr(model, head) else ""
        key = f"{head}.{child}" if child and _is_container(model, head) else head
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def _is_container(model: nn.Module, name: str) -> bool:
    module = getattr(model, name, None)
    return isinstance(module, nn.Module) and len(list(module.named_children())) > 1


class GradualUnfreeze:
    """Thaw a frozen part one stage at a time, from the last (nearest the head) back.

    Stage ``k`` (counting from the top) thaws at the start of epoch ``k * every``; the
    state depends on the epoch only, so a resumed run thaws exactly as an unbroken one.
    """

    def __init__(self, model: nn.Module, frozen: Sequence[str], every: int) -> None:
        if every < 1:
            raise ConfigError(f"Expected unfreeze_every >= 1, received {every}")
        self.groups = stages(model, frozen)
        self.every = every

    def thawed(self, epoch: int) -> int:
        """How many stages (from the top) are thawed during ``epoch`` (0-based)."""
        return min(len(self.groups), max(epoch, 0) // self.every)

    def apply(self, model: nn.Module, epoch: int) -> list[str]:
        """Set requires_grad for ``epoch`` (0-based); returns the names thawed at its start."""
        n = len(self.groups)
        now, before = self.thawed(epoch), self.thawed(epoch - 1)
        _set_grad(model, [p for g in self.groups[: n - now] for p in g], False)
        _set_grad(model, [p for g in self.groups[n - now :] for p in g], True)
        return [p for g in self.groups[n - now : n - before] for p in g] if now > before else []


def param_groups(
    model: nn.Module, lr: float, multipliers: Mapping[str, float] | None = None
) -> list[dict[str, object]]:
    """Optimizer parameter groups: each selector's parameters at ``lr * multiplier``, the
    rest at ``lr``; the first selector that picks a parameter wins. Frozen parameters are
    kept in their group, so that unfreezing later needs no new optimizer.

    Raises:
        ConfigError: a multiplier that is not a positive number, or a selector that
            matches nothing.
    """
    named = dict(model.named_parameters())
    taken: set[str] = set()
    groups: list[dict[str, object]] = []
    for selector, mult in (multipliers or {}).items():
        if not isinstance(mult, int | float) or isinstance(mult, bool) or mult <= 0:
            raise ConfigError(
                f"Expected a positive lr multiplier for {selector!r}, received {mult!r}"
            )
        names = [n for n in select(model, selector) if n not in taken]
        taken |= set(names)
        if names:
            groups.append({"params": [named[n] for n in names], "lr": lr * mult, "name": selector})
    rest = [p for n, p in named.items() if n not in taken]
    if rest:
        groups.append({"params": rest, "lr": lr, "name": "rest"})
    return groups


def trainable_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
