"""Looking inside models: summaries, filters and feature maps, attributions, dreams, style."""

from cnnlab.inspect.attribution import (
    deconvnet,
    grad_cam,
    guided_backprop,
    occlusion,
    overlay,
    saliency,
    smoothgrad,
)
from cnnlab.inspect.dream import activation_maximisation, deep_dream
from cnnlab.inspect.embedding import penultimate_features, project, scatter_png
from cnnlab.inspect.evaluation import (
    confusion_matrix,
    confusion_png,
    format_report,
    most_confused,
    per_class_report,
    worst_mistakes,
)
from cnnlab.inspect.style import gram_matrix, style_transfer
from cnnlab.inspect.summary import LayerRow, format_summary, group_rows, summary, totals
from cnnlab.inspect.visualize import (
    feature_map_grid,
    feature_maps,
    filter_grid,
    image_grid,
    save_png,
)

__all__ = [
    "LayerRow",
    "activation_maximisation",
    "confusion_matrix",
    "confusion_png",
    "deconvnet",
    "deep_dream",
    "feature_map_grid",
    "feature_maps",
    "filter_grid",
    "format_report",
    "format_summary",
    "grad_cam",
    "gram_matrix",
    "group_rows",
    "guided_backprop",
    "image_grid",
    "most_confused",
    "occlusion",
    "overlay",
    "penultimate_features",
    "per_class_report",
    "project",
    "saliency",
    "save_png",
    "scatter_png",
    "smoothgrad",
    "style_transfer",
    "summary",
    "totals",
    "worst_mistakes",
]
