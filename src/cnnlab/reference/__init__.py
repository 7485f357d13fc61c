"""A NumPy-only teaching engine: every CNN op's forward next to its backward, checked against PyTorch."""

from cnnlab.reference.conv import (
    conv2d,
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv_flops,
    conv_macs,
    conv_matrix,
    conv_output_size,
    conv_param_count,
    conv_transpose2d,
    conv_transpose2d_backward,
)
from cnnlab.reference.explain import explain_backprop, explain_conv, explain_pool, parse_matrix
from cnnlab.reference.model import SGD, Sequential
from cnnlab.reference.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "SGD",
    "Sequential",
    "avg_pool2d",
    "avg_pool2d_backward",
    "conv2d",
    "conv2d_backward_bias",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv_flops",
    "conv_macs",
    "conv_matrix",
    "conv_output_size",
    "conv_param_count",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "explain_backprop",
    "explain_conv",
    "explain_pool",
    "max_pool2d",
    "max_pool2d_backward",
    "parse_matrix",
]
