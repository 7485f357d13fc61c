"""A network's features under a shallow classifier: a frozen body, pooled, then a linear
model or nearest neighbours fitted outside gradient descent (cnnlab.transfer.shallow).

Seed 000's "off-the-shelf features": the CNN is a fixed feature extractor, and a
logistic regression, linear SVM or k-nearest-neighbour vote decides. Both heads are
tensors, so the whole pipeline saves and loads as an ordinary cnnlab model
(safetensors, nothing pickled) and predicts, evaluates and serves like one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError

SHALLOW = "shallow"  # the "architecture" a saved shallow pipeline's config names
HEADS = ("linear", "knn")


def pooled_features(body: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``body.forward_features(x)`` averaged over its spatial axes: (B, C)."""
    maps = body.forward_features(x)  # type: ignore[operator]
    return pool(maps)


def pool(maps: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) -> (B, C): the mean over every axis after the channels."""
    return maps.flatten(2).mean(2) if maps.dim() > 2 else maps


class NearestNeighbours(nn.Module):
    """Uniform k-NN vote over stored (standardised) training features; log vote shares out."""

    train_features: torch.Tensor
    train_labels: torch.Tensor

    def __init__(self, num_features: int, num_classes: int, n_train: int, k: int) -> None:
        super().__init__()
        self.k, self.num_classes = k, num_classes
        self.register_buffer("train_features", torch.zeros(n_train, num_features))
        self.register_buffer("train_labels", torch.zeros(n_train, dtype=torch.int64))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(f.float(), self.train_features)  # (B, N)
        nearest = d.topk(self.k, dim=1, largest=False).indices
        votes = nn.functional.one_hot(self.train_labels[nearest], self.num_classes).sum(1)
        # Log vote shares with a small floor: softmax of the output is the vote share.
        return torch.log((votes.float() + 1e-4) / (self.k + 1e-4 * self.num_classes))


class ShallowClassifier(nn.Module):
    """A frozen zoo classifier's pooled features -> ``scale`` -> a fitted head.

    Args:
        body: the feature extractor (any model with ``forward_features``).
        head: "linear" (logistic regression or linear SVM: standardisation folded into
            the weights) or "knn".
        num_features: channels of the pooled features.
        num_classes: classes of the head.
        n_train, k: the k-NN head's stored training set size and neighbours.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        body: nn.Module,
        head: str,
        num_features: int,
        num_classes: int,
        n_train: int = 0,
        k: int = 1,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"Expected head in {HEADS}, received head={head!r}")
        self.body = body.eval().requires_grad_(False)
        self.in_channels = getattr(body, "in_channels", None)
        self.num_classes, self.kind = num_classes, head
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.head: nn.Module = (
            nn.Linear(num_features, num_classes)
            if head == "linear"
            else NearestNeighbours(num_features, num_classes, n_train, k)
        )
        self.head.requires_grad_(False)

    def train(self, mode: bool = True) -> ShallowClassifier:
        super().train(mode)
        self.body.eval()  # the body's BatchNorm statistics are the pretrained ones
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The body's last feature maps (what Grad-CAM and feature views look at)."""
        return self.body.forward_features(x)  # type: ignore[operator]

    def forward_head(self, maps: torch.Tensor) -> torch.Tensor:
        """Feature maps -> pooled, standardised -> the fitted head's scores."""
        return self.head((pool(maps) - self.mean) / self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_shallow(args: dict[str, Any], build: Any) -> ShallowClassifier:
    """Rebuild a saved pipeline's module from its record (``build`` rebuilds the body)."""
    try:
        body = build(args["body"])
        return ShallowClassifier(
            body, args["head"], int(args["num_features"]), int(args["num_classes"]),
            int(args.get("n_train", 0)), int(args.get("k", 1)),
        )  # fmt: skip
    except KeyError as e:
        raise ConfigError(f"a shallow pipeline's model_args lack {e}") from None
