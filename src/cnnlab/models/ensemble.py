"""Ensembles: several classifiers whose class probabilities are averaged.

An :class:`Ensemble` outputs the log of the members' mean softmax, so it drops in
wherever a classifier's logits are expected (softmax of the output is the mean of the
members' probabilities; cross-entropy, test-time augmentation and ``cnnlab.engine.predictor``
work unchanged). It is saved and loaded like any other model: its config lists the
members' configs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.core.records import record_of, set_record
from cnnlab.models.registry import create_model
from cnnlab.models.shallow import SHALLOW, build_shallow

ENSEMBLE = "ensemble"  # the "architecture" an ensemble's saved config names
COMBINE_RULES = ("softmax", "sigmoid", "mean")


class Ensemble(nn.Module):
    """Average the class probabilities of ``members`` (each maps images to logits).

    Members built with ``create_model`` (or loaded) carry their config, and then the
    ensemble can be saved with ``cnnlab.save``; any other modules still predict.

    Raises:
        ConfigError: no members, or members that disagree on their number of classes.
    """

    def __init__(self, members: Sequence[nn.Module], combine: str = "softmax") -> None:
        super().__init__()
        if not members:
            raise ConfigError("Expected at least one ensemble member, received none")
        if combine not in COMBINE_RULES:
            raise ConfigError(f"Expected combine in {COMBINE_RULES}, received combine={combine!r}")
        self.combine = combine
        classes = [getattr(m, "num_classes", None) for m in members]
        if len(set(classes)) != 1:
            raise ConfigError(f"Expected members with one number of classes, received {classes}")
        self.members = nn.ModuleList(members)
        self.num_classes = classes[0]
        self.in_channels = getattr(members[0], "in_channels", None)
        records = [r for r in map(record_of, members) if r is not None]
        if len(records) == len(members):
            described = [
                {"architecture": r.architecture, "model_args": r.model_args} for r in records
            ]
            args: dict[str, Any] = {"members": described}
            if combine != "softmax":  # older saved ensembles have no key: softmax
                args["combine"] = combine
            first = records[0]
            set_record(self, first.copy(architecture=ENSEMBLE, model_args=args, frozen=[]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The members' outputs combined: usable as one model's output of the same kind."""
        outputs = torch.stack([m(x).float() for m in self.members])
        n = math.log(len(self.members))
        if self.combine == "mean":
            return outputs.mean(0)
        if self.combine == "sigmoid":  # logit(mean sigmoid), from log-probabilities: stable
            log_p = torch.logsumexp(nn.functional.logsigmoid(outputs), dim=0) - n
            log_q = torch.logsumexp(nn.functional.logsigmoid(-outputs), dim=0) - n
            return log_p - log_q
        return torch.logsumexp(outputs.log_softmax(2), dim=0) - n


def build_model(record: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its {"architecture", "model_args"} record, ensembles and shallow
    pipelines included."""
    name, args = record["architecture"], record.get("model_args") or {}
    if name == SHALLOW:
        return build_shallow(args, build_model)
    if name != ENSEMBLE:
        return create_model(name, **args)
    members = args.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(
            f"an ensemble's model_args need a non-empty 'members' list, received {members!r}"
        )
    return Ensemble([build_model(m) for m in members], combine=args.get("combine", "softmax"))
