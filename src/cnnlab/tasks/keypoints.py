"""Keypoint regression: P (x, y) points per image, masked MSE, RMSE in pixels and PCK.

Models output (B, 2P): x1, y1, x2, y2, ... scaled to [-1, 1] with the convention of
``F.grid_sample(align_corners=False)`` (cnnlab.models.integral_regression): pixel column
j (centre at x = j in the targets' pixel units) sits at (2j + 1) / W - 1. Targets stay in
pixels: ``keypoints`` (N, P, 2) and ``visible`` (N, P). Points that are not visible
(missing in the Kaggle CSV, or moved out of the image by augmentation) are masked out of
the loss and the metrics, not dropped with their image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError
from cnnlab.tasks.base import Targets, Task, register_task
from cnnlab.tasks.metrics import KeypointMetrics
from cnnlab.tasks.tta import tta_mode


def to_unit(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Pixel (x, y) (B, P, 2) -> [-1, 1] coordinates."""
    H, W = size
    scale = torch.tensor([W, H], dtype=points.dtype, device=points.device)
    return (2 * points + 1) / scale - 1


def to_pixels(unit: Tensor, size: tuple[int, int]) -> Tensor:
    """[-1, 1] coordinates (B, P, 2) -> pixel (x, y)."""
    H, W = size
    scale = torch.tensor([W, H], dtype=unit.dtype, device=unit.device)
    return ((unit + 1) * scale - 1) / 2


def _visible(targets: Targets) -> Tensor:
    kp = targets["keypoints"]
    visible = targets.get("visible")
    known = ~torch.isnan(kp).any(-1)
    return known if visible is None else visible.bool() & known


class KeypointTaskMetrics:
    """KeypointMetrics on model outputs (B, 2P) and pixel targets."""

    def __init__(self, size: tuple[int, int], pck_alpha: float) -> None:
        self.size = size
        self.inner = KeypointMetrics(size, pck_alpha)

    def update(self, outputs: Tensor, targets: Targets) -> None:
        pred = to_pixels(outputs.detach().float().reshape(len(outputs), -1, 2), self.size)
        visible = _visible(targets)
        self.inner.update(pred, torch.nan_to_num(targets["keypoints"].float()), visible)

    def compute(self) -> dict[str, Any]:
        return dict(self.inner.compute())


@register_task
class Keypoints(Task):
    """Keypoint regression with a masked mean squared error on [-1, 1] coordinates.

    Options:
        image_size: (H, W) of the images (set from the dataset).
        flip_index: the left/right permutation for mirrored test-time views.
        pck_alpha: PCK counts a point within pck_alpha * max(H, W) pixels (0.05).
    """

    name = "keypoints"
    targets = ("keypoints",)
    metric = "rmse_px"
    ensemble_combine = "mean"
    model_task = "keypoints"

    def __init__(
        self,
        image_size: list[int] | None = None,
        flip_index: list[int] | None = None,
        pck_alpha: float = 0.05,
        label_smoothing: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.size = (int(image_size[0]), int(image_size[1])) if image_size else None
        self.flip_index, self.pck_alpha = flip_index, float(pck_alpha)

    def check_data(self, data: Any) -> None:
        super().check_data(data)
        H, W = data.input_shape[-2:]
        self.size = (int(H), int(W))
        self.flip_index = self.flip_index or data.flip_index
        P = len(data.classes)
        for split, targets in (("train", data.targets_train), ("test", data.targets_test)):
            kp = targets["keypoints"]
            if kp.dim() != 3 or kp.shape[1:] != (P, 2) or not kp.is_floating_point():
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'keypoints': expected float "
                    f"(N, {P}, 2) pixel coordinates, received dtype={kp.dtype} "
                    f"shape={tuple(kp.shape)}"
                )
            shown = kp[_visible(targets)]
            outside = (shown[:, 0] < -0.5) | (shown[:, 0] >= W - 0.5)
            outside |= (shown[:, 1] < -0.5) | (shown[:, 1] >= H - 0.5)
            if bool(outside.any()):
                first = shown[outside][0].tolist()
                raise ConfigError(
                    f"dataset {data.name!r} ({split}) field 'keypoints': {int(outside.sum())} "
                    f"visible points lie outside the {W}x{H} image (e.g. (x, y) = "
                    f"({first[0]:.1f}, {first[1]:.1f})); expected x in [-0.5, {W - 0.5}) "
                    f"and y in [-0.5, {H - 0.5})"
                )

    def model_args(self, data: Any) -> dict[str, Any]:
        return {"num_classes": 2 * len(data.classes)}

    def expected_output(self, data: Any, batch: int) -> tuple[int, ...]:
        return (batch, 2 * len(data.classes))

    def output_hint(self, data: Any) -> str:
        return f"build it with num_classes={2 * len(data.classes)} (x and y per keypoint)"

    def record_args(self, data: Any) -> dict[str, Any]:
        size = list(data.input_shape[-2:])
        return {"image_size": size, "flip_index": self.flip_index or data.flip_index}

    def _size(self) -> tuple[int, int]:
        if self.size is None:
            raise ConfigError("the keypoints task needs image_size (set from the dataset)")
        return self.size

    def _squared_errors(self, outputs: Tensor, targets: Targets) -> tuple[Tensor, Tensor]:
        pred = outputs.float().reshape(len(outputs), -1, 2)
        target = to_unit(torch.nan_to_num(targets["keypoints"].float()), self._size())
        mask = _visible(targets).to(pred.dtype)[..., None]  # (B, P, 1)
        return (pred - target).square() * mask, mask.expand_as(pred)

    def loss(self, outputs: Tensor, targets: Targets) -> dict[str, Tensor]:
        squared, mask = self._squared_errors(outputs, targets)
        return {"loss": squared.sum() / mask.sum().clamp_min(1)}

    def metrics(self) -> KeypointTaskMetrics:
        return KeypointTaskMetrics(self._size(), self.pck_alpha)

    def eval_outputs(self, model: nn.Module, x: Tensor, tta: Any) -> Tensor:
        """The mean of the coordinates for the image and (tta) its mirror, mapped back."""
        out = model(x).float()
        if tta_mode(tta) == "none" or self.flip_index is None:
            return out
        mirrored = model(x.flip(3)).float().reshape(len(x), -1, 2)
        mirrored = mirrored[:, list(self.flip_index)] * torch.tensor([-1.0, 1.0])
        return (out + mirrored.reshape(len(x), -1)) / 2

    def eval_loss(self, outputs: Tensor, targets: Targets) -> Tensor:
        squared, mask = self._squared_errors(outputs, targets)
        return (squared.sum((1, 2)) / mask.sum((1, 2)).clamp_min(1)).sum()

    def scores(self, outputs: Tensor) -> Tensor:
        """Pixel (x, y) per keypoint: (N, P, 2)."""
        return to_pixels(outputs.reshape(len(outputs), -1, 2), self._size())

    def _at(self, scores: Tensor, size: tuple[int, int]) -> Tensor:
        """Pixel (x, y) predictions moved from the model's input size to ``size``."""
        H, W = self._size()
        scale = torch.tensor([size[1] / W, size[0] / H], dtype=scores.dtype)
        return (scores + 0.5) * scale - 0.5

    def summarise(
        self, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> list[tuple[str, str]]:
        """Each keypoint's (x, y) in the file's pixels."""
        points = self._at(scores, size)
        return [
            (name, f"x {float(x):.1f}  y {float(y):.1f}")
            for name, (x, y) in zip(classes, points.tolist(), strict=True)
        ]

    def pictures(
        self, image: Tensor, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> dict[str, Any]:
        """The image at the file's size with the predicted points drawn in red."""
        from cnnlab.tasks.views import draw_points, grey_rgb

        resized = F.interpolate(
            image[None].float(), size=size, mode="bilinear", align_corners=False
        )
        picture = grey_rgb(resized[0].round().clamp(0, 255).to(torch.uint8))
        return {"keypoints": draw_points(picture, self._at(scores, size).numpy(), (230, 40, 40))}

    def report_sections(
        self, inputs: Tensor, scores: Tensor, targets: Targets, classes: list[str]
    ) -> list[tuple[str, Any, str]]:
        from cnnlab.tasks.views import captioned_grid, draw_points, grey_rgb

        n = min(12, len(inputs))
        visible = _visible(targets)
        pictures, captions = [], []
        for i in range(n):
            truth = targets["keypoints"][i][visible[i]]
            picture = draw_points(grey_rgb(inputs[i]), truth.numpy(), (60, 200, 60))
            pictures.append(draw_points(picture, scores[i].numpy(), (230, 40, 40)))
            error = (scores[i][visible[i]] - truth).norm(dim=-1)
            captions.append(f"#{i}: mean error {float(error.mean()):.1f} px")
        grid = captioned_grid(pictures, captions)
        caption = f"the first {n} test images: true points green, predicted red"
        return [("Predicted keypoints", grid, caption)]
