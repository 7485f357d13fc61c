"""Pictures of detections: boxes with class names and scores, precision-recall curves per
class, and the test set's worst false positives and missed objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from cnnlab.tasks.boxes import box_iou
from cnnlab.tasks.views import PALETTE, captioned_grid, grey_rgb

MATCH_IOU = 0.5  # a detection is right when it overlaps a same-class object this much
SHOWN = 8  # pictures per report section


def draw_boxes(
    picture: np.ndarray,
    boxes: Tensor,
    labels: Sequence[int],
    texts: Sequence[str],
    colours: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """An RGB picture (H, W, 3) with xyxy ``boxes`` outlined and ``texts`` above them."""
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    for i, (box, label, text) in enumerate(zip(boxes.tolist(), labels, texts, strict=True)):
        colour = (
            tuple(colours[i]) if colours else tuple(PALETTE[1 + int(label) % (len(PALETTE) - 1)])
        )
        x1, y1, x2, y2 = box
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour)
        if text:
            draw.text((x1 + 1, max(0, y1 - 11)), text, fill=colour)
    return np.asarray(image)


def draw_detections(
    image: Tensor, boxes: Tensor, rows: Tensor, classes: list[str], size: tuple[int, int]
) -> np.ndarray:
    """The uint8 image (C, h, w) resized to ``size`` (H, W) with boxes already at that size;
    ``rows`` (n, 2) hold score and label."""
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)
    picture = grey_rgb(resized[0].round().clamp(0, 255).to(torch.uint8))
    labels = [int(r[1]) for r in rows]
    texts = [f"{classes[k]} {float(r[0]):.2f}" for k, r in zip(labels, rows, strict=True)]
    return draw_boxes(picture, boxes, labels, texts)


def match(found: Tensor, truth: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Greedy matching of one image's detections (D, 6), best first, to its objects:
    (D,) bool, the detection found an unclaimed object of its class at IoU >= 0.5;
    (M,) bool, the object was found."""
    real = found[found[:, 5] >= 0]
    hit = torch.zeros(len(real), dtype=torch.bool)
    claimed = torch.zeros(len(truth["boxes"]), dtype=torch.bool)
    if len(real) and len(truth["boxes"]):
        iou = box_iou(real[:, :4], truth["boxes"])
        same = real[:, 5:6].long() == truth["labels"][None, :]
        iou = torch.where(same, iou, torch.zeros_like(iou))
        for d in range(len(real)):
            free = torch.where(claimed, torch.zeros_like(iou[d]), iou[d])
            best = int(free.argmax())
            if float(free[best]) >= MATCH_IOU:
                hit[d], claimed[best] = True, True
    return hit, claimed


def report_sections(
    inputs: Tensor, scores: Tensor, truths: list[dict[str, Tensor]], classes: list[str]
) -> list[tuple[str, Any, str]]:
    """Precision-recall per class, the most confident false positives, the missed objects."""
    false_pos: list[tuple[float, int, Tensor]] = []
    missed: list[tuple[float, int, Tensor]] = []
    records: list[tuple[float, bool, int]] = []  # (score, right, class) of every detection
    totals = np.zeros(len(classes), dtype=np.int64)
    for i, (found, truth) in enumerate(zip(scores, truths, strict=True)):
        hit, claimed = match(found, truth)
        real = found[found[:, 5] >= 0]
        records += [(float(r[4]), bool(h), int(r[5])) for r, h in zip(real, hit, strict=True)]
        totals += np.bincount(truth["labels"].numpy(), minlength=len(classes))
        false_pos += [(float(r[4]), i, r) for r, h in zip(real, hit, strict=True) if not h]
        for box, label, got in zip(truth["boxes"], truth["labels"], claimed, strict=True):
            if not got:
                missed.append(
                    (
                        -float((box[2] - box[0]) * (box[3] - box[1])),
                        i,
                        torch.cat([box, torch.tensor([0.0, float(label)])]),
                    )
                )
    sections: list[tuple[str, Any, str]] = [
        ("Precision-recall per class", pr_curves(records, totals, classes),
         f"detections sorted by score, right when they overlap an unclaimed object of their class at IoU >= {MATCH_IOU}")
    ]  # fmt: skip
    false_pos.sort(key=lambda t: -t[0])
    if false_pos:
        grid = _examples(inputs, false_pos[:SHOWN], classes, "false")
        sections.append(
            (
                "Most confident false positives",
                grid,
                "red: the wrong box (class, score); green: the image's objects",
            )
        )
    missed.sort(key=lambda t: t[0])
    if missed:
        grid = _examples(inputs, missed[:SHOWN], classes, "missed")
        sections.append(
            ("Largest missed objects", grid, "orange: an object no detection found at IoU >= 0.5")
        )
    return sections


def _examples(
    inputs: Tensor, picked: list[tuple[float, int, Tensor]], classes: list[str], kind: str
) -> np.ndarray:
    pictures, captions = [], []
    for _, i, row in picked:
        picture = grey_rgb(inputs[i])
        picture = np.asarray(
            Image.fromarray(picture).resize(
                (picture.shape[1] * 3, picture.shape[0] * 3), Image.Resampling.NEAREST
            )
        )
        colour = (230, 40, 40) if kind == "false" else (245, 130, 48)
        text = f"{classes[int(row[5])]}" + (f" {float(row[4]):.2f}" if kind == "false" else "")
        pictures.append(draw_boxes(picture, row[None, :4] * 3, [int(row[5])], [text], [colour]))
        captions.append(f"#{i}: {text}")
    return captioned_grid(pictures, captions)


def pr_curves(
    records: list[tuple[float, bool, int]], totals: np.ndarray, classes: list[str]
) -> np.ndarray:
    """One precision-recall curve per class (IoU 0.5) as an RGB picture."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for k, name in enumerate(classes):
        mine = sorted((r for r in records if r[2] == k), key=lambda r: -r[0])
        if not totals[k]:
            continue
        right = np.cumsum([r[1] for r in mine]) if mine else np.zeros(1)
        recall = right / totals[k]
        precision = right / np.arange(1, len(right) + 1)
        ax.plot(recall, precision, label=name, color=PALETTE[1 + k % (len(PALETTE) - 1)] / 255)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(fig)
    return picture
