"""In-memory image datasets: whole splits as uint8 tensors, labels as int64."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cnnlab.errors import ShapeMismatchError


@dataclass
class ImageDataset:
    """A train/test split held in memory.

    Images are uint8 tensors shaped (N, C, H, W); labels are int64 tensors shaped (N,).
    Keeping uint8 in memory is 4x smaller than float32 and lets every epoch index
    whole batches without decoding anything.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str = ""  # where the files came from (path or URL), for the run record
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ShapeMismatchError(
                    f"{self.name} {split} images: expected a uint8 tensor (N, C, H, W), "
                    f"received dtype={x.dtype} shape={tuple(x.shape)}"
                )
            if y.dim() != 1 or len(y) != len(x):
                raise ShapeMismatchError(
                    f"{self.name} {split} labels: expected shape ({len(x)},), "
                    f"received {tuple(y.shape)}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ShapeMismatchError(
                f"{self.name}: train images are {tuple(self.x_train.shape[1:])} "
                f"but test images are {tuple(self.x_test.shape[1:])}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images, on the 0..1 scale."""
        x = self.x_train.to(torch.float32).div_(255)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        return mean.tolist(), std.tolist()

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, classes={self.num_classes})"
        )
