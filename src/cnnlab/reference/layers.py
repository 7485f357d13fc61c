"""Layer objects over the NumPy ops: each keeps what its backward needs and its own gradients."""

from __future__ import annotations

import numpy as np

from cnnlab.reference import ops
from cnnlab.reference.conv import (
    conv2d,
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
)
from cnnlab.reference.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward


class Layer:
    """Base layer: ``forward`` caches, ``backward`` returns dL/dinput and fills ``grads``."""

    training: bool = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output and keep what backward needs."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Return dL/dinput given dL/doutput; store parameter gradients in ``self.grads``."""
        raise NotImplementedError

    def params(self) -> list[np.ndarray]:
        """Learnable arrays, updated in place by the optimiser."""
        return []

    def grads(self) -> list[np.ndarray]:
        """Gradients, in the same order as :meth:`params`."""
        return []


def _uniform(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    """He-style uniform init: U(-b, b) with b = sqrt(6 / fan_in), suited to ReLU."""
    bound = np.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape)


class Conv2d(Layer):
    """2-D convolution layer (see :func:`cnnlab.reference.conv.conv2d`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        rng: np.random.Generator,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = _uniform(rng, fan_in, (out_channels, in_channels, kernel_size, kernel_size))
        self.bias = np.zeros(out_channels)
        self.stride, self.padding = stride, padding
        self.dweight, self.dbias = np.zeros_like(self.weight), np.zeros_like(self.bias)
        self.x: np.ndarray = np.empty((0, 0, 0, 0))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        kernel_hw = (self.weight.shape[2], self.weight.shape[3])
        self.dweight[...] = conv2d_backward_weight(
            self.x, grad_out, kernel_hw, self.stride, self.padding
        )
        self.dbias[...] = conv2d_backward_bias(grad_out)
        return conv2d_backward_input(
            grad_out, self.weight, (self.x.shape[2], self.x.shape[3]), self.stride, self.padding
        )

    def params(self) -> list[np.ndarray]:
        return [self.weight, self.bias]

    def grads(self) -> list[np.ndarray]:
        return [self.dweight, self.dbias]


class Linear(Layer):
    """Fully connected layer (see :func:`cnnlab.reference.ops.dense`)."""

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator) -> None:
        self.weight = _uniform(rng, in_features, (out_features, in_features))
        self.bias = np.zeros(out_features)
        self.dweight, self.dbias = np.zeros_like(self.weight), np.zeros_like(self.bias)
        self.x: np.ndarray = np.empty((0, 0, 0, 0))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return ops.dense(x, self.weight, self.bias)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx, self.dweight[...], self.dbias[...] = ops.dense_backward(self.x, self.weight, grad_out)
        return dx

    def params(self) -> list[np.ndarray]:
        return [self.weight, self.bias]

    def grads(self) -> list[np.ndarray]:
        return [self.dweight, self.dbias]


class ReLU(Layer):
    """Rectified linear unit."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return ops.relu(x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return ops.relu_backward(self.x, grad_out)


class Tanh(Layer):
    """Hyperbolic tangent, LeNet-5's original squashing function."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = ops.tanh(x)
        return self.y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return ops.tanh_backward(self.y, grad_out)


class MaxPool2d(Layer):
    """Max pooling; remembers the winners for backward."""

    def __init__(self, kernel_size: int = 2) -> None:
        self.kernel_size = kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input_shape = x.shape
        y, self.argmax = max_pool2d(x, self.kernel_size)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return max_pool2d_backward(grad_out, self.argmax, self.input_shape)


class AvgPool2d(Layer):
    """Average pooling (LeNet-5's subsampling, without its trainable scale)."""

    def __init__(self, kernel_size: int = 2) -> None:
        self.kernel_size = kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input_shape = x.shape
        return avg_pool2d(x, self.kernel_size)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return avg_pool2d_backward(grad_out, self.input_shape, self.kernel_size)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input_shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(self.input_shape)


class BatchNorm(Layer):
    """Batch normalisation over (N, C) or (N, C, H, W), with running statistics for eval."""

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.gamma, self.beta = np.ones(num_features), np.zeros(num_features)
        self.running_mean, self.running_var = np.zeros(num_features), np.ones(num_features)
        self.momentum, self.eps = momentum, eps
        self.dgamma, self.dbeta = np.zeros(num_features), np.zeros(num_features)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self.cache = ops.batch_norm(
            x,
            self.gamma,
            self.beta,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
        )
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx, self.dgamma[...], self.dbeta[...] = ops.batch_norm_backward(self.cache, grad_out)
        return dx

    def params(self) -> list[np.ndarray]:
        return [self.gamma, self.beta]

    def grads(self) -> list[np.ndarray]:
        return [self.dgamma, self.dbeta]


class Dropout(Layer):
    """Inverted dropout drawing its masks from an explicit generator."""

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        self.p, self.rng = p, rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self.mask = ops.dropout(x, self.p, self.rng, self.training)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return ops.dropout_backward(self.mask, grad_out)
