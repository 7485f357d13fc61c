"""Object detectors on any zoo backbone: FCOS (Tian et al. 2019, "FCOS: Fully
Convolutional One-Stage Object Detection") and SSD (Liu et al. 2016, "SSD: Single Shot
MultiBox Detector").

Both return ONE tensor of raw per-prior predictions, (B, P, 5 + K) for K classes, and a
:class:`PriorSpec` (``model.spec``) that lays the P priors on an image: the
``detect`` task (cnnlab.tasks.detect) turns the two into a loss and into boxes.

- FCOS: a prior is a feature-map cell centre (cx, cy) with w = h = the level's stride;
  columns are the distances to the box's left, top, right and bottom edges in pixels,
  a centre-ness logit and K class logits (sigmoid, no background class).
- SSD: a prior is a default box (cx, cy, w, h) of several sizes and aspect ratios per
  cell; columns are the box offsets encoded against it (SSD's variances 0.1 / 0.2)
  and 1 + K softmax logits, column 4 being the background.

Priors are ordered level by level (finest first), then row, column, and (SSD) default box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.base import check_channels, check_num_classes
from cnnlab.models.pyramid import FeaturePyramid, feature_pyramid
from cnnlab.models.registry import register_model
from cnnlab.models.segmenter import check_divisible

PRIOR_PROBABILITY = 0.01  # FCOS / RetinaNet: class logits start at sigmoid = 0.01


@dataclass(frozen=True)
class PriorSpec:
    """Where a detector's priors lie on an image: its levels' strides and box shapes.

    Attributes:
        kind: "fcos" (one point per cell) or "ssd" (default boxes per cell).
        strides: stride of each output level, finest first.
        sizes: SSD only: the default boxes' side (ratio 1) per level, in pixels.
        ratios: SSD only: aspect ratios w / h of the default boxes (1 is always first).
    """

    kind: str
    strides: tuple[int, ...]
    sizes: tuple[float, ...] = ()
    ratios: tuple[float, ...] = ()

    @property
    def per_cell(self) -> int:
        """Priors per feature-map cell: 1 for FCOS; SSD's ratios plus one larger square."""
        return 1 if self.kind == "fcos" else len(self.ratios) + 1

    def shapes(self, level: int) -> list[tuple[float, float]]:
        """(w, h) of the priors of one cell at ``level``."""
        stride = self.strides[level]
        if self.kind == "fcos":
            return [(float(stride), float(stride))]
        size = self.sizes[level]
        larger = (
            math.sqrt(size * self.sizes[level + 1]) if level + 1 < len(self.sizes) else 2 * size
        )
        boxes = [(size * math.sqrt(r), size / math.sqrt(r)) for r in self.ratios]
        return [*boxes, (larger, larger)]

    def priors(self, image_size: tuple[int, int]) -> torch.Tensor:
        """(P, 4) priors (cx, cy, w, h) in pixels for an image of ``image_size`` (H, W)."""
        H, W = image_size
        rows = []
        for level, stride in enumerate(self.strides):
            ys = (torch.arange(H // stride, dtype=torch.float32) + 0.5) * stride
            xs = (torch.arange(W // stride, dtype=torch.float32) + 0.5) * stride
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
            shapes = torch.tensor(self.shapes(level))  # (A, 2)
            centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, len(shapes), 2)
            sides = shapes.expand(centres.shape[0], -1, -1)
            rows.append(torch.cat([centres, sides], -1).reshape(-1, 4))
        return torch.cat(rows)

    def mirror(self, image_size: tuple[int, int]) -> torch.Tensor:
        """(P,) index of each prior's left-right mirror image: prior i of a flipped image
        sits where prior mirror[i] of the original does (same row, shape and level)."""
        H, W = image_size
        index = []
        start = 0
        for stride in self.strides:
            h, w, a = H // stride, W // stride, self.per_cell
            grid = torch.arange(h * w * a).reshape(h, w, a)
            index.append(start + grid.flip(1).reshape(-1))
            start += h * w * a
        return torch.cat(index)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PriorSpec:
        """The spec :meth:`to_dict` wrote (a saved model's record)."""
        return cls(
            str(values["kind"]),
            tuple(int(s) for s in values["strides"]),
            tuple(float(s) for s in values.get("sizes", ())),
            tuple(float(r) for r in values.get("ratios", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "strides": list(self.strides),
            "sizes": list(self.sizes),
            "ratios": list(self.ratios),
        }


class Scale(nn.Module):
    """A learnable scalar per level: FCOS's shared head regresses every level with the
    same convs, and this lets each level choose its own range."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class FPN(nn.Module):
    """Feature Pyramid Network (Lin et al. 2017): lateral 1x1 convs, top-down "upsample
    x2, add", a 3x3 conv per level; ``extra_levels`` stride-2 3x3 convs on the coarsest
    output add coarser levels (FCOS's P6 and P7, with a ReLU between them)."""

    def __init__(self, in_channels: Sequence[int], channels: int, extra_levels: int = 0) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels
        )
        self.extra = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(extra_levels)
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):  # coarse to fine
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        outputs = [conv(x) for conv, x in zip(self.output, laterals, strict=True)]
        x = outputs[-1]
        for i, conv in enumerate(self.extra):
            x = conv(F.relu(x) if i > 0 else x)
            outputs.append(x)
        return outputs


def tower(channels: int, num_convs: int, groups: int) -> nn.Sequential:
    """``num_convs`` x (3x3 conv, GroupNorm, ReLU): GroupNorm, not BatchNorm, because one
    head serves every level and every level has its own statistics."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """The head shared by every level: a classification and a box tower, then K class
    logits, 4 edge distances (exp of a per-level scale, times the stride) and centre-ness
    (on the box tower, as the FCOS authors later found better)."""

    def __init__(
        self, channels: int, num_classes: int, strides: Sequence[int], num_convs: int, groups: int
    ) -> None:
        super().__init__()
        self.strides = list(strides)
        self.cls_tower = tower(channels, num_convs, groups)
        self.box_tower = tower(channels, num_convs, groups)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_deltas = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in strides)
        for conv in (self.cls_logits, self.box_deltas, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)  # type: ignore[arg-type]  # built with a bias
        prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        nn.init.constant_(self.cls_logits.bias, prior)  # type: ignore[arg-type]

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        rows = []
        for x, scale, stride in zip(levels, self.scales, self.strides, strict=True):
            cls = self.cls_logits(self.cls_tower(x))  # (B, K, h, w)
            box = self.box_tower(x)
            # exp keeps distances positive; the clamp keeps a wild step from overflowing.
            distances = torch.exp(scale(self.box_deltas(box)).clamp(max=10.0)) * stride
            out = torch.cat([distances, self.centerness(box), cls], 1)  # (B, 5 + K, h, w)
            rows.append(out.flatten(2).transpose(1, 2))  # (B, h * w, 5 + K)
        return torch.cat(rows, 1)


class Detector(nn.Module):
    """A backbone's feature pyramid, an optional neck, and a head: image -> (B, P, 5 + K).

    Subclasses build ``features``, ``neck``, ``head`` and ``spec``. ``stride`` is the
    coarsest level's: H and W must be multiples of it, so every prior lies on the grid.
    """

    in_channels: int
    num_classes: int
    stride: int
    spec: PriorSpec
    features: FeaturePyramid
    neck: nn.Module
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_channels(self, x, self.in_channels)
        check_divisible(self, x, self.stride)
        levels: list[torch.Tensor] = self.neck(self.features(x))
        return levels

    def forward_head(self, levels: list[torch.Tensor]) -> torch.Tensor:
        out: torch.Tensor = self.head(levels)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _make_head(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head for ``num_classes`` classes (the backbone and neck are kept)."""
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)


class FCOS(Detector):
    """FCOS: anchor-free, one prediction per feature-map cell of an FPN.

    Args:
        in_channels: image channels.
        num_classes: object classes (no background class).
        backbone: registered model whose body gives the pyramid.
        backbone_args: extra arguments for the backbone's builder.
        num_levels: backbone levels used (the coarsest ones).
        extra_levels: coarser levels made by the FPN (P6, P7 in the paper).
        channels: FPN and head channels (256 in the paper).
        num_convs: convs per head tower (4 in the paper).
        groups: GroupNorm groups in the towers (32 in the paper).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        backbone: str = "resnet_mini",
        backbone_args: dict[str, Any] | None = None,
        num_levels: int = 3,
        extra_levels: int = 0,
        channels: int = 64,
        num_convs: int = 2,
        groups: int = 16,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if channels % groups:
            raise ConfigError(
                f"Expected channels divisible by groups, received {channels} and {groups}"
            )
        self.in_channels, self.num_classes = in_channels, num_classes
        self.channels, self.num_convs, self.groups = channels, num_convs, groups
        self.features = feature_pyramid(backbone, in_channels, num_levels, backbone_args)
        strides = [*self.features.strides]
        strides += [strides[-1] * 2 ** (i + 1) for i in range(extra_levels)]
        self.spec = PriorSpec("fcos", tuple(strides))
        self.stride = strides[-1]
        self.neck = FPN(self.features.channels, channels, extra_levels)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return FCOSHead(self.channels, num_classes, self.spec.strides, self.num_convs, self.groups)


class SSDHead(nn.Module):
    """One 3x3 conv per level predicts, for each default box of a cell, 4 encoded offsets
    and 1 + K class logits (background first)."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, per_cell: int) -> None:
        super().__init__()
        self.per_cell, self.width = per_cell, 5 + num_classes
        self.predict = nn.ModuleList(
            nn.Conv2d(c, per_cell * self.width, 3, padding=1) for c in in_channels
        )

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        rows = []
        for x, conv in zip(levels, self.predict, strict=True):
            out = conv(x)  # (B, A * (5 + K), h, w)
            B, _, h, w = out.shape
            out = out.reshape(B, self.per_cell, self.width, h, w).permute(0, 3, 4, 1, 2)
            rows.append(out.reshape(B, h * w * self.per_cell, self.width))
        return torch.cat(rows, 1)


class SSD(Detector):
    """SSD: default boxes of several sizes and aspect ratios on each level of the
    backbone's pyramid, each predicting offsets and class scores (no FPN).

    Args:
        in_channels: image channels.
        num_classes: object classes (the background class is added).
        backbone: registered model whose body gives the pyramid.
        backbone_args: extra arguments for the backbone's builder.
        num_levels: backbone levels used (the coarsest ones).
        box_scale: a level's default box side is ``box_scale`` x its stride.
        ratios: aspect ratios w / h; each cell also gets a square between this level's
            size and the next one's, as in the paper.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        backbone: str = "resnet_mini",
        backbone_args: dict[str, Any] | None = None,
        num_levels: int = 3,
        box_scale: float = 4.0,
        ratios: Sequence[float] = (1.0, 2.0, 0.5),
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if not ratios or ratios[0] != 1.0 or any(r <= 0 for r in ratios):
            raise ConfigError(
                f"Expected positive ratios starting with 1.0, received {list(ratios)}"
            )
        self.in_channels, self.num_classes = in_channels, num_classes
        self.features = feature_pyramid(backbone, in_channels, num_levels, backbone_args)
        strides = tuple(self.features.strides)
        sizes = tuple(box_scale * s for s in strides)
        self.spec = PriorSpec("ssd", strides, sizes, tuple(float(r) for r in ratios))
        self.stride = strides[-1]
        self.neck = nn.Identity()
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return SSDHead(self.features.channels, num_classes, self.spec.per_cell)


def _register(name: str, paper: str, year: int, shape: tuple[int, int, int]) -> Any:
    return register_model(
        name, input_shape=shape, paper=paper, year=year, test_input_shape=(1, 32, 32), task="detect"
    )


# resnet_mini with a fourth stage: levels at strides 4, 8 and 16 suit 64x64 images of
# 10-30 pixel objects, and the head runs on 16x16 maps at most, not 32x32 (2.5x faster).
SMALL_BACKBONE = {"widths": [32, 64, 128, 256], "blocks": [1, 1, 1, 1]}


@_register("fcos", "Tian et al. 2019", 2019, (1, 64, 64))
def fcos(**kwargs: Any) -> FCOS:
    """The default detector: FCOS on a four-stage resnet_mini (strides 4, 8, 16), a
    64-channel FPN and 2-conv towers."""
    if kwargs.get("backbone", "resnet_mini") == "resnet_mini":
        kwargs.setdefault("backbone_args", SMALL_BACKBONE)
    return FCOS(**kwargs)


@register_model(
    "fcos_resnet50_fpn", input_shape=(3, 768, 768), paper="Tian et al. 2019", year=2019,
    test_input_shape=(3, 128, 128), task="detect",
)  # fmt: skip
def fcos_resnet50_fpn(**kwargs: Any) -> FCOS:
    """The paper's FCOS: ResNet-50 C3-C5, a 256-channel FPN with P6 and P7 (strides 8 to
    128), 4-conv GroupNorm towers."""
    args: dict[str, Any] = {
        "in_channels": 3, "num_classes": 80, "backbone": "resnet50", "num_levels": 3,
        "extra_levels": 2, "channels": 256, "num_convs": 4, "groups": 32,
    }  # fmt: skip
    return FCOS(**{**args, **kwargs})


@_register("ssd", "Liu et al. 2016", 2016, (1, 64, 64))
def ssd(**kwargs: Any) -> SSD:
    """SSD on the four-stage resnet_mini: default boxes of side 12, 24 and 48 at strides
    4, 8 and 16 (box_scale 3)."""
    if kwargs.get("backbone", "resnet_mini") == "resnet_mini":
        kwargs.setdefault("backbone_args", SMALL_BACKBONE)
    kwargs.setdefault("box_scale", 3.0)
    return SSD(**kwargs)
