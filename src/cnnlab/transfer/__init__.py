"""Transfer learning: pretrained weights (cnnlab runs, torchvision, Keras), freezing by name
and stage, discriminative learning rates, and shallow classifiers on a network's features.

``cnnlab.create_model(name, weights=...)`` is this package's :func:`create_model`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from cnnlab.core.records import record_of
from cnnlab.models import registry
from cnnlab.transfer.freezing import (
    GradualUnfreeze,
    freeze,
    freeze_until,
    keep_frozen_norms_eval,
    param_groups,
    select,
    trainable_count,
    unfreeze,
)
from cnnlab.transfer.shallow import CLASSIFIERS, extract_features, fit_shallow
from cnnlab.transfer.weights import (
    KERAS_SUFFIXES,
    TransferReport,
    adapt_first_conv,
    load_weights,
    read_source,
)

__all__ = [
    "CLASSIFIERS",
    "GradualUnfreeze",
    "TransferReport",
    "adapt_first_conv",
    "create_model",
    "extract_features",
    "fit_shallow",
    "freeze",
    "freeze_until",
    "keep_frozen_norms_eval",
    "load_weights",
    "param_groups",
    "read_source",
    "select",
    "trainable_count",
    "unfreeze",
]


def create_model(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    first_conv: str = "adapt",
    classes: list[str] | None = None,
    log: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally starting from pretrained ``weights``.

    ``weights`` is a saved cnnlab model or run folder, a ``.safetensors`` or ``.pth``
    state dict (cnnlab's or torchvision's layout), or a Keras ``.weights.h5``/``.keras``
    file; the model's own arguments (``num_classes``, ``in_channels``, ...) decide its
    shape, and the head and first conv adapt (see :mod:`cnnlab.transfer.weights`). What
    was loaded, adapted or left new is ``model.cnnlab_record.extra["pretrained"]``, and
    is written into the saved model's config.json. For a Keras file the builder gets the
    options that make the network compute what Keras's does (``layout_keras``), unless
    ``kwargs`` sets them. ``classes``: the class names the model will learn; when the
    source is a saved model of other classes, its head is left new even if it fits.

    Raises:
        UnknownNameError: unknown model name.
        CheckpointError, WeightsError: weights that cannot be read or do not fit.
    """
    if weights is not None and str(weights).lower().endswith(KERAS_SUFFIXES):
        from cnnlab.transfer.layout_keras import keras_model_args

        kwargs = {**keras_model_args(name), **kwargs}
    model = registry.create_model(name, **kwargs)
    if weights is None:
        return model
    source = read_source(weights)
    other_classes = classes is not None and source.classes is not None and source.classes != classes
    report = load_weights(
        model, source, first_conv=first_conv, new_head=other_classes, architecture=name
    )
    if log is not None:
        log(report.summary())
    record = record_of(model)
    if record is not None:
        record.extra["pretrained"] = {
            "source": report.source, "layout": report.layout, "loaded": len(report.loaded),
            "adapted": report.adapted, "new": len(report.new), "unused": len(report.unused),
        }  # fmt: skip
    return model
