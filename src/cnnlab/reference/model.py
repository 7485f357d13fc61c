"""A tiny Sequential container and SGD with momentum for the NumPy reference layers."""

from __future__ import annotations

import numpy as np

from cnnlab.reference.layers import Layer


class Sequential:
    """Layers applied in order; backward walks them in reverse."""

    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every layer's forward, in order."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Run every layer's backward, last layer first; returns dL/dinput."""
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def params(self) -> list[np.ndarray]:
        """Every learnable array, layer by layer."""
        return [p for layer in self.layers for p in layer.params()]

    def grads(self) -> list[np.ndarray]:
        """Every gradient, in the order of :meth:`params`."""
        return [g for layer in self.layers for g in layer.grads()]

    def train(self, mode: bool = True) -> Sequential:
        """Switch batch norm and dropout between training and eval behaviour."""
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self) -> Sequential:
        """Shorthand for ``train(False)``."""
        return self.train(False)

    def num_params(self) -> int:
        """How many learnable numbers the model has."""
        return sum(p.size for p in self.params())


class SGD:
    """Stochastic gradient descent with momentum and weight decay (PyTorch's formulation).

    ``v = momentum * v + (g + weight_decay * p)``; ``p -= lr * v``.
    """

    def __init__(
        self,
        params: list[np.ndarray],
        grads: list[np.ndarray],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"Expected lr > 0, received lr={lr}")
        self.params, self.grads = params, grads
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self) -> None:
        """Update every parameter in place from its current gradient."""
        for p, g, v in zip(self.params, self.grads, self.velocity, strict=True):
            v *= self.momentum
            v += g + self.weight_decay * p
            p -= self.lr * v
