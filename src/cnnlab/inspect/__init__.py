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
    "deconvnet",
    "deep_dream",
    "feature_map_grid",
    "feature_maps",
    "filter_grid",
    "format_summary",
    "grad_cam",
    "gram_matrix",
    "group_rows",
    "guided_backprop",
    "image_grid",
    "occlusion",
    "overlay",
    "saliency",
    "save_png",
    "smoothgrad",
    "style_transfer",
    "summary",
    "totals",
]
