"""Patch-whitening initialisation of a network's first convolution, frozen (as airbench).

The first conv's filters are set to the directions that whiten the training images'
kh x kw patches: if the patches' covariance is ``V diag(lam) V^T``, filter ``i`` is
``V[:, i] / sqrt(lam[i] + eps)``, and its negative sits beside it so that a following
ReLU keeps both signs. Responses to such filters are uncorrelated with unit variance,
so the layers above start from decorrelated inputs; the layer is then frozen.

Measured on Fashion-MNIST (`resnet_mini`, single 9-epoch runs of the `fmnist-fast`
member, one thread, bf16; BENCHMARKS.md): seeds 0-3 reached 94.06, 93.93, 93.75 and
93.87% (mean 93.90) against 93.78, 93.73, 93.77 and 93.75% (mean 93.76) without it.
Whitened but trainable filters gave 93.83% on seed 0 (one run), and a frozen *random*
first layer 93.51%: what helps is the whitening, kept frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError

EPS = 5e-4  # added to each eigenvalue: tames the near-zero-variance directions
MAX_IMAGES = 10_000  # patches from this many images are plenty for a C*kh*kw covariance


def whitening_filters(
    images: torch.Tensor, kernel_size: tuple[int, int], eps: float = EPS
) -> torch.Tensor:
    """Filters (C*kh*kw, C, kh, kw) that whiten the ``kh x kw`` patches of ``images``.

    Args:
        images: (N, C, H, W) float images, already normalised as the model sees them.
        kernel_size: (kh, kw) of the patches.
        eps: added to every eigenvalue before the inverse square root.

    Returns the filters in order of decreasing patch variance (eigenvalue).
    """
    if images.dim() != 4 or not images.is_floating_point():
        raise ConfigError(
            f"Expected float images shaped (N, C, H, W), received {tuple(images.shape)} "
            f"of dtype {images.dtype}"
        )
    kh, kw = kernel_size
    c = images.shape[1]
    if images.shape[2] < kh or images.shape[3] < kw:
        raise ConfigError(
            f"Expected images of at least {kh}x{kw} pixels for {kh}x{kw} patches, "
            f"received {tuple(images.shape[2:])}"
        )
    patches = F.unfold(images.double(), (kh, kw)).transpose(1, 2).reshape(-1, c * kh * kw)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]
    return filters.reshape(-1, c, kh, kw).float()


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` of ``model`` in registration order, with its name."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ConfigError(f"whiten needs a Conv2d layer; {type(model).__name__} has none")


def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = EPS) -> str:
    """Set the first conv's filters to +/- the patch-whitening filters of ``images``
    and freeze its weight (its bias, if any, keeps training); returns the layer's name.

    A conv with ``out`` filters takes the ``out // 2`` directions of largest variance
    when ``out < 2 * C * kh * kw``; filters beyond ``2 * C * kh * kw`` keep their initial
    values (frozen too).
    """
    name, conv = first_conv(model)
    if conv.groups != 1 or conv.dilation != (1, 1):
        raise ConfigError(
            f"whiten needs an ordinary first conv; {name} has groups={conv.groups}, "
            f"dilation={conv.dilation}"
        )
    if images.shape[1] != conv.in_channels:
        raise ConfigError(
            f"whiten: {name} takes {conv.in_channels} channels, received images with "
            f"{images.shape[1]}"
        )
    filters = whitening_filters(images[:MAX_IMAGES], conv.kernel_size, eps)  # type: ignore[arg-type]
    n = min(len(filters), conv.out_channels // 2)
    with torch.no_grad():
        weight = filters[:n].to(conv.weight.dtype)
        conv.weight[:n] = weight
        conv.weight[n : 2 * n] = -weight
    conv.weight.requires_grad_(False)
    return name
