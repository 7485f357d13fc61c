"""Activations by name, plus Maxout (Goodfellow et al. 2013) and a channel-wise GLU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError, UnknownNameError
from cnnlab.layers.arithmetic import check_positive


def _glu(**kwargs: Any) -> nn.Module:
    # Gated linear unit (Dauphin et al. 2017): a ⊗ sigmoid(b), halves split on channels.
    return nn.GLU(dim=kwargs.pop("dim", 1))


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "glu": _glu,
    "identity": nn.Identity,
}


def get_activation(name: str, **kwargs: Any) -> nn.Module:
    """Build an activation module from its name.

    Args:
        name: one of ``ACTIVATIONS`` (e.g. 'relu', 'leaky_relu', 'glu').
        **kwargs: passed to the module (e.g. ``negative_slope=0.2``).

    Returns:
        A fresh module.

    Raises:
        UnknownNameError: the name is not in the table; the message lists valid names.
    """
    if name not in ACTIVATIONS:
        raise UnknownNameError("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name](**kwargs)


class Maxout(nn.Module):
    """Maxout: ``pieces`` affine maps per output feature, keep the largest.

    Acts on dim 1, so it is a dense layer on (B, in_features) and a 1×1
    convolution on (B, in_features, H, W): y_j = max_i (W_ij · x + b_ij).

    Args:
        in_features: input features or channels.
        out_features: output features or channels.
        pieces: affine pieces per output (k in the paper).
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        check_positive("in_features", [in_features])
        check_positive("out_features", [out_features])
        check_positive("pieces", [pieces])
        self.in_features = in_features
        self.out_features = out_features
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.in_features:
            raise ShapeMismatchError(
                f"Maxout expected input (B, {self.in_features}, ...), received shape {tuple(x.shape)}"
            )
        z = self.linear(x.movedim(1, -1)).movedim(-1, 1)  # (B, out·pieces, ...)
        z = z.unflatten(1, (self.out_features, self.pieces))  # (B, out, pieces, ...)
        return z.amax(dim=2)
