"""Semantic segmentation: a class per pixel, cross-entropy (+ Dice), IoU."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError
from cnnlab.tasks.base import Targets, Task, register_task
from cnnlab.tasks.metrics import SegmentationMetrics
from cnnlab.tasks.tta import tta_mode


class SegmentTaskMetrics:
    """SegmentationMetrics on logits (B, K, H, W) and the ``mask`` target."""

    def __init__(self, num_classes: int, ignore_index: int | None) -> None:
        self.inner = SegmentationMetrics(num_classes, ignore_index)

    def update(self, outputs: Tensor, targets: Targets) -> None:
        self.inner.update(outputs.detach().argmax(1), targets["mask"].long())

    def compute(self) -> dict[str, Any]:
        return dict(self.inner.compute())


def soft_dice_loss(outputs: Tensor, mask: Tensor, ignore_index: int | None) -> Tensor:
    """1 - mean over classes of the soft Dice between softmax(outputs) and one-hot(mask)."""
    K = outputs.shape[1]
    keep = torch.ones_like(mask, dtype=torch.bool) if ignore_index is None else mask != ignore_index
    target = F.one_hot(torch.where(keep, mask, 0).long(), K).permute(0, 3, 1, 2).float()
    probs = outputs.float().softmax(1) * keep[:, None]
    target = target * keep[:, None]
    inter = (probs * target).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + target.sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (total + 1)).mean()


@register_task
class Segment(Task):
    """Semantic segmentation: models map (B, C, H, W) to logits (B, num_classes, H, W).

    Class 0 is the background. Options:
        ignore_index: mask value that is neither scored nor trained on (255).
        dice: weight of a soft Dice loss added to the cross-entropy (0 = off).
    """

    name = "segment"
    targets = ("mask",)
    metric = "miou"
    ensemble_combine = "softmax"
    model_task = "segment"

    def __init__(
        self,
        ignore_index: int | None = 255,
        dice: float = 0.0,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.ignore_index, self.dice, self.num_classes = ignore_index, float(dice), num_classes
        self.criterion = nn.CrossEntropyLoss(
            ignore_index=-100 if ignore_index is None else ignore_index,
            label_smoothing=label_smoothing,
        )

    def check_data(self, data: Any) -> None:
        super().check_data(data)
        k = self.num_classes = len(self.class_names(data))
        for split, targets in (("train", data.targets_train), ("test", data.targets_test)):
            mask = targets["mask"]
            if mask.dim() != 3 or mask.is_floating_point():
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'mask': expected integer class "
                    f"maps (N, H, W), received dtype={mask.dtype} shape={tuple(mask.shape)}"
                )
            values = mask.long()
            if self.ignore_index is not None:
                values = values[values != self.ignore_index]
            if len(values) and (int(values.min()) < 0 or int(values.max()) >= k):
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'mask': expected class ids in "
                    f"[0, {k}) (or ignore_index={self.ignore_index}), received values in "
                    f"[{int(values.min())}, {int(values.max())}]"
                )

    def class_names(self, data: Any) -> list[str]:
        """The mask's classes, background first."""
        return list(data.mask_classes or data.classes)

    def expected_output(self, data: Any, batch: int) -> tuple[int, ...]:
        return (batch, len(self.class_names(data)), *data.input_shape[1:])

    def output_hint(self, data: Any) -> str:
        k = len(self.class_names(data))
        return f"build a segmentation model (cnnlab models --task segment) with num_classes={k}"

    def record_args(self, data: Any) -> dict[str, Any]:
        return {"num_classes": len(self.class_names(data)), "ignore_index": self.ignore_index}

    def loss(self, outputs: Tensor, targets: Targets) -> dict[str, Tensor]:
        mask = targets["mask"].long()
        losses = {"cross_entropy": self.criterion(outputs.float(), mask)}
        total = losses["cross_entropy"]
        if self.dice:
            losses["dice"] = soft_dice_loss(outputs, mask, self.ignore_index)
            total = total + self.dice * losses["dice"]
        return {"loss": total, **losses}

    def metrics(self) -> SegmentTaskMetrics:
        if self.num_classes is None:
            raise ConfigError("the segment task needs num_classes (set from the dataset)")
        return SegmentTaskMetrics(self.num_classes, self.ignore_index)

    def eval_outputs(self, model: nn.Module, x: Tensor, tta: Any) -> Tensor:
        """Per-pixel log of the mean softmax over the input and (tta) its mirror."""
        log_p = model(x).float().log_softmax(1)
        if tta_mode(tta) == "none":
            return log_p
        mirrored = model(x.flip(3)).float().log_softmax(1).flip(3)  # back to the input's frame
        return torch.logaddexp(log_p, mirrored) - torch.log(torch.tensor(2.0))

    def eval_loss(self, outputs: Tensor, targets: Targets) -> Tensor:
        ignore = -100 if self.ignore_index is None else self.ignore_index
        per = F.cross_entropy(
            outputs, targets["mask"].long(), ignore_index=ignore, reduction="none"
        )
        return per.mean((1, 2)).sum()

    def scores(self, outputs: Tensor) -> Tensor:
        """Per-pixel class probabilities (N, K, H, W); argmax over dim 1 is the mask."""
        return outputs.softmax(1)

    def _mask_at(self, scores: Tensor, size: tuple[int, int]) -> Tensor:
        """The predicted mask, mapped back to the file's (H, W) by nearest neighbour."""
        mask = scores.argmax(0)[None, None].float()
        return F.interpolate(mask, size=size, mode="nearest")[0, 0].long()

    def summarise(
        self, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> list[tuple[str, str]]:
        """The share of the image each predicted class covers."""
        counts = torch.bincount(self._mask_at(scores, size).flatten(), minlength=len(classes))
        share = counts.double() / counts.sum()
        return [
            (classes[k], f"{float(share[k]):.1%} of pixels")
            for k in share.argsort(descending=True).tolist()
            if counts[k]
        ]

    def pictures(
        self, image: Tensor, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> dict[str, Any]:
        """The mask (class ids as grey levels) and an overlay, at the file's size."""
        from cnnlab.tasks.views import overlay_mask

        mask = self._mask_at(scores, size)
        resized = F.interpolate(
            image[None].float(), size=size, mode="bilinear", align_corners=False
        )
        picture = resized[0].round().clamp(0, 255).to(torch.uint8)
        return {"mask": mask.to(torch.uint8).numpy(), "overlay": overlay_mask(picture, mask)}

    def report_sections(
        self, inputs: Tensor, scores: Tensor, targets: Targets, classes: list[str]
    ) -> list[tuple[str, Any, str]]:
        from cnnlab.tasks.views import captioned_grid, overlay_mask

        n = min(8, len(inputs))
        pictures, captions = [], []
        for i in range(n):
            pictures += [
                overlay_mask(inputs[i], targets["mask"][i]),
                overlay_mask(inputs[i], scores[i].argmax(0)),
            ]
            captions += [f"#{i} true", f"#{i} predicted"]
        grid = captioned_grid(pictures, captions, ncols=4)
        return [("Predicted masks", grid, f"the first {n} test inputs: true and predicted masks")]
