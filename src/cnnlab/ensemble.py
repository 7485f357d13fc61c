"""Ensembles in one place: the model that combines members, the rules and their arithmetic.

``cnnlab.ensemble.majority_vote_accuracy(0.7, 3) == 0.784`` (seed 000's worked example);
members train side by side with ``cnnlab train --ensemble N`` (``--ensemble-combine``,
``--ensemble-sampling bootstrap``), or are combined in Python with :class:`Ensemble`.
"""

from cnnlab.models.ensemble import COMBINE_RULES, Ensemble
from cnnlab.tasks.box_fusion import weighted_boxes_fusion
from cnnlab.transfer.combine import (
    Stacker,
    boosted_vote,
    bootstrap_indices,
    fit_weights,
    hard_vote,
    hard_vote_labels,
    majority_vote_accuracy,
    mean_disagreement,
    out_of_fold_indices,
    pairwise_disagreement,
    samme_weights,
    soft_average,
)
from cnnlab.transfer.ensembles import diversity, fit_combiner, member_probabilities

__all__ = [
    "COMBINE_RULES",
    "Ensemble",
    "Stacker",
    "boosted_vote",
    "bootstrap_indices",
    "diversity",
    "fit_combiner",
    "fit_weights",
    "hard_vote",
    "hard_vote_labels",
    "majority_vote_accuracy",
    "mean_disagreement",
    "member_probabilities",
    "out_of_fold_indices",
    "pairwise_disagreement",
    "samme_weights",
    "soft_average",
    "weighted_boxes_fusion",
]
