"""In-memory datasets: whole splits as tensors, inputs of any rank, targets as a dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab.core.errors import ShapeMismatchError

# What each target key holds, per sample (N rows in every tensor):
#   label (N,) int64 class id                 labels (N, K) float multi-hot
#   mask (N, H, W) integer class map          keypoints (N, P, 2) float (x, y) pixels
#   visible (N, P) bool known keypoints       boxes (N, M, 4) + classes (N, M), -1 = pad
TARGET_KINDS = ("label", "labels", "mask", "keypoints", "visible", "boxes", "classes")


@dataclass
class ImageDataset:
    """A train/test split held in memory.

    Inputs are uint8 images (N, C, H, W), float signals (N, C, L) or int64 token ids
    (N, L). Targets are a dict per split (``targets_train``, ``targets_test``); the
    classic single-label form passes ``y_train``/``y_test`` (int64 (N,)), which become
    the ``label`` target. Keeping uint8 in memory is 4x smaller than float32 and lets
    every epoch index whole batches without decoding anything.

    Attributes:
        task: the task this dataset trains by default ("classify", "multilabel",
            "segment", "keypoints").
        flip_index: for keypoint datasets, the left/right permutation after a mirror.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    classes: list[str]
    source: str = ""  # where the files came from (path or URL), for the run record
    extra: dict[str, str] = field(default_factory=dict)
    targets_train: dict[str, torch.Tensor] = field(default_factory=dict)
    targets_test: dict[str, torch.Tensor] = field(default_factory=dict)
    task: str = "classify"
    flip_index: list[int] | None = None
    # Names of the values in ``mask`` targets, background (0) first, when they differ
    # from ``classes`` (composed scenes: 10 item classes, 11 mask values).
    mask_classes: list[str] | None = None
    # How one raw input (a sentence, a WAV file, a vibration recording) becomes one row of
    # x, as JSON: the saved model keeps it so `predict` prepares inputs as training did.
    # {"kind": "text", "vocabulary": {...}, "max_len": 56} | {"kind": "audio", ...} | None
    preprocess: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.y_train is not None:
            self.targets_train.setdefault("label", self.y_train)
        if self.y_test is not None:
            self.targets_test.setdefault("label", self.y_test)
        self.y_train = self.targets_train.get("label")
        self.y_test = self.targets_test.get("label")
        for split, x, targets in (
            ("train", self.x_train, self.targets_train),
            ("test", self.x_test, self.targets_test),
        ):
            _check_inputs(self.name, split, x)
            _check_targets(self.name, split, x, targets)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ShapeMismatchError(
                f"{self.name}: train images are {tuple(self.x_train.shape[1:])} "
                f"but test images are {tuple(self.x_test.shape[1:])}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image, (C, L) of one signal, (L,) of one token sequence."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training inputs (images on the 0..1 scale)."""
        if not self.x_train.is_floating_point() and self.x_train.dtype != torch.uint8:
            return [0.0], [1.0]  # token ids are not normalised
        x = self.x_train.to(torch.float32)
        if self.x_train.dtype == torch.uint8:
            x = x.div_(255)
        dims = (0, *range(2, x.dim()))
        mean = x.mean(dim=dims)
        std = x.std(dim=dims).clamp_min(1e-6)
        return mean.tolist(), std.tolist()

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, classes={self.num_classes}, task={self.task!r}, "
            f"targets={sorted(self.targets_train)})"
        )


Dataset = ImageDataset  # the name DESIGN.md uses: inputs of any rank, a dict of targets


def _check_inputs(name: str, split: str, x: torch.Tensor) -> None:
    ok = (
        (x.dtype == torch.uint8 and x.dim() == 4)
        or (x.is_floating_point() and x.dim() in (3, 4))
        or (x.dtype == torch.int64 and x.dim() == 2)
    )
    if not ok:
        raise ShapeMismatchError(
            f"{name} {split} images: expected a uint8 tensor (N, C, H, W) (or float signals "
            f"(N, C, L), int64 token ids (N, L)), received dtype={x.dtype} "
            f"shape={tuple(x.shape)}"
        )


def _check_targets(name: str, split: str, x: torch.Tensor, targets: dict[str, Any]) -> None:
    for key, value in targets.items():
        if not isinstance(value, torch.Tensor) or len(value) != len(x):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            what = "labels" if key == "label" else f"target {key!r}"
            raise ShapeMismatchError(
                f"{name} {split} {what}: expected shape ({len(x)},...) (one row per input), "
                f"received {got}"
            )
    if "mask" in targets and x.dim() == 4 and targets["mask"].shape[1:] != x.shape[2:]:
        raise ShapeMismatchError(
            f"{name} {split} target 'mask': each mask must be the size of its image; images "
            f"are {tuple(x.shape[2:])} (H, W), masks are {tuple(targets['mask'].shape[1:])}"
        )
    if "label" in targets and targets["label"].dim() != 1:
        raise ShapeMismatchError(
            f"{name} {split} labels: expected shape ({len(x)},), "
            f"received {tuple(targets['label'].shape)}"
        )
