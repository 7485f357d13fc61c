"""Ensembles: several classifiers whose class probabilities are averaged.

An :class:`Ensemble` outputs the log of the members' mean softmax, so it drops in
wherever a classifier's logits are expected (softmax of the output is the mean of the
members' probabilities; cross-entropy, test-time augmentation and ``cnnlab.predict``
work unchanged). It is saved and loaded like any other model: its config lists the
members' configs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.registry import create_model

ENSEMBLE = "ensemble"  # the "architecture" an ensemble's saved config names


class Ensemble(nn.Module):
    """Average the class probabilities of ``members`` (each maps images to logits).

    Members built with ``create_model`` (or loaded) carry their config, and then the
    ensemble can be saved with ``cnnlab.save``; any other modules still predict.

    Raises:
        ConfigError: no members, or members that disagree on their number of classes.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("Expected at least one ensemble member, received none")
        classes = [getattr(m, "num_classes", None) for m in members]
        if len(set(classes)) != 1:
            raise ConfigError(f"Expected members with one number of classes, received {classes}")
        self.members = nn.ModuleList(members)
        self.num_classes = classes[0]
        self.in_channels = getattr(members[0], "in_channels", None)
        found = [getattr(m, "cnnlab_config", None) for m in members]
        records = [r for r in found if isinstance(r, dict) and "architecture" in r]
        if len(records) == len(members):
            self.cnnlab_config: dict[str, Any] = {
                "architecture": ENSEMBLE,
                "model_args": {
                    "members": [
                        {"architecture": r["architecture"], "model_args": r.get("model_args", {})}
                        for r in records
                    ]
                },
            }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log(mean softmax) over the members: (B, num_classes), usable as logits."""
        log_probs = torch.stack([m(x).float().log_softmax(1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def build_model(record: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its {"architecture", "model_args"} record, ensembles included."""
    name, args = record["architecture"], record.get("model_args") or {}
    if name != ENSEMBLE:
        return create_model(name, **args)
    members = args.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(
            f"an ensemble's model_args need a non-empty 'members' list, received {members!r}"
        )
    return Ensemble([build_model(m) for m in members])
