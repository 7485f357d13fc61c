"""Ensembles: several models whose outputs are combined into one model's output.

Rules: ``softmax`` (the mean of the members' class probabilities, the default for
classification and segmentation), ``weighted`` (a weighted mean; the weights are fitted
on held-out data, cnnlab.transfer.ensembles), ``vote`` (hard majority: each member's
top class counts one; ties go to the higher mean probability), ``boosted`` (SAMME: each
member's top class counts its alpha), ``stacked`` (a
logistic-regression meta-learner over the members' concatenated probabilities, fitted
on held-out data), ``sigmoid`` (multi-label), ``mean`` (raw outputs: keypoints) and, for
detectors, ``wbf`` and ``nms``: the members' raw outputs side by side, (B, M * P, 5 + K),
which the detect task decodes member by member and fuses by weighted boxes fusion (each
member's own detections) or by NMS over all their candidates (cnnlab.tasks.detect; the
ensemble's record tells the task how many members and which rule). Weights and the meta-learner are buffers, saved with the
members' weights. Probability rules work per item and, for (B, C, H, W) outputs, per pixel.

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
from cnnlab.models.spec import SPEC, from_spec

ENSEMBLE = "ensemble"  # the "architecture" an ensemble's saved config names
COMBINE_RULES = (
    "softmax", "weighted", "vote", "boosted", "stacked", "sigmoid", "mean", "wbf", "nms"
)  # fmt: skip
BOX_RULES = ("wbf", "nms")  # detectors: the members' boxes fused, not their outputs averaged
FITTED_RULES = ("weighted", "stacked")  # fitted on held-out data after the members train
VOTE_TIE_BREAK = 1e-3  # mean probability's share of a vote: decides ties, never a majority


class Ensemble(nn.Module):
    """Combine ``members``' outputs by the rule ``combine`` (one of COMBINE_RULES; None:
    ``mean`` for detectors, else ``softmax``, the mean of their class probabilities).

    Members built with ``create_model`` (or loaded) carry their config, and then the
    ensemble can be saved with ``cnnlab.save``; any other modules still predict.

    Raises:
        ConfigError: no members, or members that disagree on their classes or input shape.
    """

    weights: torch.Tensor  # "weighted": (M,) on the simplex
    stack_coef: torch.Tensor  # "stacked": (K, M * K)
    stack_bias: torch.Tensor  # "stacked": (K,)

    def __init__(self, members: Sequence[nn.Module], combine: str | None = None) -> None:
        super().__init__()
        if not members:
            raise ConfigError("Expected at least one ensemble member, received none")
        if combine is None:  # detectors: raw outputs (as the detect task's default)
            combine = "mean" if hasattr(members[0], "spec") else "softmax"
        if combine not in COMBINE_RULES:
            raise ConfigError(f"Expected combine in {COMBINE_RULES}, received combine={combine!r}")
        self.combine = combine
        classes = [getattr(m, "num_classes", None) for m in members]
        if len(set(classes)) != 1:
            raise ConfigError(f"Expected members with one number of classes, received {classes}")
        check_members_agree(members)
        self.members = nn.ModuleList(members)
        self.num_classes = classes[0]
        m, k = len(members), classes[0] or 1
        if combine in ("weighted", "boosted"):  # uniform until fitted
            self.register_buffer("weights", torch.full((m,), 1.0 / m))
        if combine == "stacked":  # the meta-learner: logits = [p_1 | ... | p_M] @ coef.T + bias
            self.register_buffer("stack_coef", torch.zeros(k, m * k))
            self.register_buffer("stack_bias", torch.zeros(k))
        self.in_channels = getattr(members[0], "in_channels", None)
        if hasattr(members[0], "spec"):  # detectors: where the priors lie (cnnlab.tasks.detect)
            self.spec = members[0].spec
        if combine in BOX_RULES:
            self.fusion, self.fusion_members = combine, m
        records = [r for r in map(record_of, members) if r is not None]
        if combine in BOX_RULES:
            specs = {i: (r.task_args or {}).get("spec") for i, r in enumerate(records)}
            if len({repr(v) for v in specs.values()}) > 1:
                raise ConfigError(
                    f"combine={combine!r} decodes every member's outputs with one PriorSpec "
                    f"(the same detector head at the same strides), received {specs}"
                )
        if len(records) == len(members):
            described = [
                {"architecture": r.architecture, "model_args": r.model_args} for r in records
            ]
            args: dict[str, Any] = {"members": described}
            if combine != "softmax":  # older saved ensembles have no key: softmax
                args["combine"] = combine
            first = records[0]
            task_args = dict(first.task_args or {})
            if combine in BOX_RULES:  # the detect task decodes M members' outputs
                task_args |= {"members": m, "fusion": combine}
            set_record(
                self,
                first.copy(architecture=ENSEMBLE, model_args=args, frozen=[], task_args=task_args),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The members' outputs combined: usable as one model's output of the same kind."""
        outputs = torch.stack([m(x).float() for m in self.members])
        n = math.log(len(self.members))
        if self.combine == "mean":
            return outputs.mean(0)
        if self.combine in BOX_RULES:
            if outputs.dim() != 4:
                raise ConfigError(
                    f"combine={self.combine!r} fuses detectors' (B, P, 5 + K) outputs, "
                    f"received members' outputs of shape {tuple(outputs.shape[1:])}"
                )
            return torch.cat(list(outputs), dim=1)
        if self.combine == "sigmoid":  # logit(mean sigmoid), from log-probabilities: stable
            log_p = torch.logsumexp(nn.functional.logsigmoid(outputs), dim=0) - n
            log_q = torch.logsumexp(nn.functional.logsigmoid(-outputs), dim=0) - n
            return log_p - log_q
        if self.combine == "weighted":
            log_w = self.weights.clamp_min(1e-12).log().view(-1, *[1] * (outputs.dim() - 1))
            return torch.logsumexp(outputs.log_softmax(2) + log_w, dim=0)
        if self.combine in ("vote", "boosted"):  # boosted: each vote counts its alpha
            probs = outputs.softmax(2)
            top = nn.functional.one_hot(probs.argmax(2), probs.shape[2]).movedim(-1, 2).float()
            if self.combine == "boosted":
                say = self.weights / self.weights.sum()
                top = top * say.view(-1, *[1] * (top.dim() - 1)) * len(self.members)
            shares = top.mean(0) + VOTE_TIE_BREAK * probs.mean(0)
            return (shares / (1 + VOTE_TIE_BREAK)).log()
        if self.combine == "stacked":
            if outputs.dim() != 3:
                raise ConfigError(
                    f"stacking combines (B, num_classes) outputs, received members' outputs "
                    f"of shape {tuple(outputs.shape[1:])}"
                )
            features = outputs.softmax(2).permute(1, 0, 2).flatten(1)  # (B, M * K)
            return (features @ self.stack_coef.T + self.stack_bias).log_softmax(1)
        return torch.logsumexp(outputs.log_softmax(2), dim=0) - n


def check_members_agree(members: Sequence[nn.Module]) -> None:
    """ConfigError unless the members' records (where they have them) name the same
    classes and input shape: averaging a shirt's probability with a seven's is no ensemble."""
    records = [(i, r) for i, r in enumerate(map(record_of, members)) if r is not None]
    for field in ("classes", "input_shape"):
        seen = {(tuple(v) if (v := getattr(r, field)) is not None else None) for _, r in records}
        seen.discard(None)
        if len(seen) > 1:
            values = {i: getattr(r, field) for i, r in records}
            raise ConfigError(f"Expected members with the same {field}, received {values}")


def build_model(record: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its {"architecture", "model_args"} record, ensembles and shallow
    pipelines included."""
    name, args = record["architecture"], record.get("model_args") or {}
    if name == SHALLOW:
        return build_shallow(args, build_model)
    if name == SPEC:
        return from_spec(**args)
    if name != ENSEMBLE:
        return create_model(name, **args)
    members = args.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(
            f"an ensemble's model_args need a non-empty 'members' list, received {members!r}"
        )
    return Ensemble([build_model(m) for m in members], combine=args.get("combine", "softmax"))
