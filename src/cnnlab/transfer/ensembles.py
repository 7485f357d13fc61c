"""Ensembles after training: fit a combination rule on held-out data, measure diversity.

The members of an :class:`~cnnlab.models.ensemble.Ensemble` are trained elsewhere (side by
side, on bootstrap samples, ...); here the ``weighted`` rule's weights (validation NLL,
cnnlab.transfer.combine.fit_weights) and the ``stacked`` rule's meta-learner (logistic
regression, cnnlab.transfer.combine.Stacker) are fitted on predictions of images the
predicting members never trained on (a held-out split, :func:`fit_combiner`, or
out-of-fold predictions, :func:`fit_rule`; cnnlab.runs.ensemble gathers those), and
written into the ensemble's buffers.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.core.errors import ConfigError
from cnnlab.models.ensemble import FITTED_RULES, Ensemble
from cnnlab.models.saved import in_batches
from cnnlab.transfer.combine import Stacker, class_rows, fit_weights, mean_disagreement


def member_probabilities(
    ensemble: Ensemble, images: torch.Tensor, stats: dict[str, Any], batch_size: int = 500
) -> torch.Tensor:
    """Each member's class probabilities (M, N, K) for dataset-format ``images``."""
    ensemble.eval()

    def each(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).float().softmax(1) for m in ensemble.members])

    return in_batches(each, images, stats, batch_size, dim=1)


def predicted_classes(
    model: torch.nn.Module, images: torch.Tensor, stats: dict[str, Any], batch_size: int = 500
) -> torch.Tensor:
    """One model's top class (N,) for dataset-format ``images``, in eval mode."""
    model.eval()
    return in_batches(lambda x: model(x).argmax(1), images, stats, batch_size)


def _check_fitted(ensemble: Ensemble) -> None:
    if ensemble.combine not in FITTED_RULES:
        raise ConfigError(
            f"Expected an ensemble with a rule in {FITTED_RULES}, received {ensemble.combine!r}"
        )


def fit_combiner(
    ensemble: Ensemble, images: torch.Tensor, labels: torch.Tensor, stats: dict[str, Any]
) -> dict[str, Any]:
    """Fit the ensemble's ``weighted`` or ``stacked`` rule on held-out ``images``/``labels``;
    returns what was fitted (weights, or the meta-learner's C), for metrics.json.

    Raises:
        ConfigError: a rule that fits nothing, or no held-out images.
    """
    _check_fitted(ensemble)
    if len(images) == 0:
        raise ConfigError(
            f"the {ensemble.combine} rule is fitted on held-out images; received none"
        )
    return fit_rule(ensemble, member_probabilities(ensemble, images, stats), labels)


def fit_rule(ensemble: Ensemble, probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Fit the ensemble's ``weighted`` or ``stacked`` rule on its members' probabilities
    (M, N, K) of held-out or out-of-fold items and their ``labels`` (N,)."""
    _check_fitted(ensemble)
    if probs.dim() != 3:
        raise ConfigError(
            f"the {ensemble.combine} rule is fitted for classifiers' (N, num_classes) outputs, "
            f"received members' outputs of shape {tuple(probs.shape[1:])}; use softmax or vote"
        )
    if ensemble.combine == "weighted":
        weights = fit_weights(probs, labels)
        ensemble.weights.copy_(weights.to(ensemble.weights.dtype))
        return {"weights": [round(float(w), 4) for w in weights]}
    stacker = Stacker().fit(probs, labels)
    k = int(ensemble.num_classes or probs.shape[2])
    coef, bias = class_rows(stacker.coef, stacker.intercept, stacker.classes, k)
    ensemble.stack_coef.copy_(coef.float())
    ensemble.stack_bias.copy_(bias.float())
    return {"C": stacker.chosen_C}


def diversity(ensemble: Ensemble, images: torch.Tensor, stats: dict[str, Any]) -> float:
    """Mean pairwise disagreement of the members' top classes on ``images``."""
    return mean_disagreement(member_probabilities(ensemble, images, stats).argmax(2))
