"""An exponential moving average (EMA) of a model's weights, evaluated in place of them.

Averaging the weights over the last few hundred steps smooths out the noise of the
final SGD steps; airbench and timm both evaluate such an average. The average lives
beside the model and is swapped in only to evaluate or save.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from cnnlab.core.errors import ConfigError


class WeightEMA:
    """``average = decay * average + (1 - decay) * weights``, every ``every`` steps.

    Floating-point parameters and buffers (BatchNorm running statistics) are averaged;
    integer buffers (``num_batches_tracked``) are copied. Early on the decay is capped at
    ``(1 + n) / (10 + n)`` for the n-th update, so the average is not dominated by the
    random initial weights in short runs.

    Args:
        model: the model being trained; the average starts as a copy of its weights.
        decay: per-update decay in [0, 1). With ``every`` > 1 it applies per update,
            so the horizon in steps is about ``every / (1 - decay)``.
        every: update after every this many optimizer steps (updates cost a pass
            over all weights, so small models update less often).
    """

    def __init__(self, model: nn.Module, decay: float = 0.99, every: int = 1) -> None:
        if not 0 <= decay < 1:
            raise ConfigError(f"Expected EMA decay in [0, 1), received {decay}")
        if every < 1:
            raise ConfigError(f"Expected EMA every >= 1, received {every}")
        self.decay, self.every = decay, every
        self.steps = 0
        self.updates = 0
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model: nn.Module) -> None:
        """Count one optimizer step; fold the weights in when it is an update step."""
        self.steps += 1
        if self.steps % self.every:
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged: list[torch.Tensor] = []
        current: list[torch.Tensor] = []
        with torch.no_grad():
            for name, value in model.state_dict().items():
                target = self.average[name]
                if target.is_floating_point():
                    averaged.append(target)
                    current.append(value.detach())
                else:
                    target.copy_(value)
            if averaged:
                torch._foreach_lerp_(averaged, current, 1 - decay)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block the model holds the averaged weights; its own come back after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.average)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged weights into ``model`` for good (e.g. at the end of training)."""
        model.load_state_dict(self.average)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The average plus the step counters, for checkpoints."""
        counters = torch.tensor([self.steps, self.updates], dtype=torch.int64)
        return {**{f"average.{k}": v for k, v in self.average.items()}, "counters": counters}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` saved."""
        prefix = "average."
        missing = [k for k in self.average if prefix + k not in state]
        if missing or "counters" not in state:
            raise ConfigError(
                f"EMA state lacks {missing or ['counters']}; expected the keys state_dict() writes"
            )
        for k, v in self.average.items():
            v.copy_(state[prefix + k])
        self.steps, self.updates = (int(c) for c in state["counters"].tolist())
