"""What a fine-tuning config asks of the trainer: frozen parts, their thawing, and the
optimizer's parameter groups (cnnlab.transfer.freezing does the work)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from cnnlab.engine.config import TrainConfig
from cnnlab.transfer.freezing import (
    GradualUnfreeze,
    freeze,
    freeze_until,
    param_groups,
    trainable_count,
)


def apply_freezing(
    model: nn.Module, config: TrainConfig, log: Callable[[str], None]
) -> GradualUnfreeze | None:
    """Freeze what ``config.freeze``/``freeze_until`` name (before the first epoch, so a
    selector that matches nothing fails before any training); returns the gradual
    unfreezing schedule when ``unfreeze_every`` is set."""
    frozen: list[str] = []
    if config.freeze:
        frozen += freeze(model, config.freeze)
    if config.freeze_until:
        frozen += [n for n in freeze_until(model, config.freeze_until) if n not in frozen]
    if not frozen:
        return None
    trainable, total = trainable_count(model)
    log(f"froze {len(frozen)} tensors: {trainable:,} of {total:,} parameters train")
    if config.unfreeze_every is None:
        return None
    return GradualUnfreeze(model, frozen, config.unfreeze_every)


def parameters(model: nn.Module, config: TrainConfig) -> Iterable[Any]:
    """The optimizer's parameters: groups at ``lr * multiplier`` when ``lr_mult`` is set.
    Frozen parameters stay in, so thawing needs no new optimizer (they get no update
    while their gradient is None)."""
    if not config.lr_mult:
        return model.parameters()
    return param_groups(model, config.lr, config.lr_mult)


def thaw(
    unfreezer: GradualUnfreeze, model: nn.Module, epoch: int, log: Callable[[str], None]
) -> None:
    """Before ``epoch`` (0-based): set what trains, and say what was thawed."""
    thawed = unfreezer.apply(model, epoch)
    if thawed:
        trainable, total = trainable_count(model)
        where = thawed[0].rsplit(".", 2)[0]
        log(
            f"epoch {epoch + 1}: thawed {len(thawed)} tensors from {where}; {trainable:,} of {total:,} train"
        )
