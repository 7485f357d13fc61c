"""How a detector's raw per-prior outputs meet boxes: FCOS's and SSD's target assignment,
losses and decoding (the ``detect`` task picks the rule of the model it trains).

Targets are padded per image: ``boxes`` (B, M, 4) xyxy in pixels and ``classes`` (B, M)
with -1 on padding rows. Outputs are (B, P, 5 + K) as cnnlab.models.detector lays them
out, priors (P, 4) (cx, cy, w, h) from the model's PriorSpec.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.tasks.boxes import batched_nms, box_convert, box_iou, generalized_box_iou_loss

SSD_VARIANCES = (0.1, 0.2)  # the SSD paper's scaling of centre and size offsets


@dataclass(frozen=True)
class DecodeSettings:
    """Which candidates become detections: COCO-style evaluation keeps low scores (AP
    integrates over them) and at most 100 per image (COCO's maxDets)."""

    score_threshold: float = 0.05
    pre_nms: int = 1000  # candidates per image before NMS
    iou_threshold: float = 0.6
    max_detections: int = 100


# -- FCOS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FcosRule:
    """FCOS's assignment: a cell is positive for a box when it lies inside it, within
    ``radius`` strides of its centre (centre sampling), and the box's largest edge
    distance falls in the cell level's range; among several boxes the smallest wins.
    Losses: sigmoid focal loss, GIoU weighted by centre-ness, centre-ness BCE."""

    radius: float = 1.5
    range_factor: float = 8.0  # level l regresses max distances in (f s_{l-1}, f s_l]
    alpha: float = 0.25
    gamma: float = 2.0

    def assign(self, priors: Tensor, boxes: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
        """(B, P) index of each cell's box (-1: background) and (B, P, 4) edge distances."""
        cx, cy, stride = priors[:, 0], priors[:, 1], priors[:, 2]
        x = cx[None, :, None]  # (1, P, 1) against boxes (B, 1, M)
        y = cy[None, :, None]
        x1, y1, x2, y2 = (boxes[..., i][:, None, :] for i in range(4))
        distances = torch.stack([x - x1, y - y1, x2 - x, y2 - y], -1)  # (B, P, M, 4)
        inside = distances.min(-1).values > 0
        gx, gy = (x1 + x2) / 2, (y1 + y2) / 2
        reach = (self.radius * stride)[None, :, None]
        central = ((x - gx).abs() < reach) & ((y - gy).abs() < reach)
        low, high = self.ranges(stride)
        largest = distances.max(-1).values
        in_range = (largest > low[None, :, None]) & (largest <= high[None, :, None])
        valid = (classes >= 0)[:, None, :]
        ok = inside & central & in_range & valid
        area = ((x2 - x1) * (y2 - y1)).expand_as(ok)
        area = torch.where(ok, area, torch.full_like(area, float("inf")))
        smallest, index = area.min(-1)  # (B, P)
        index = torch.where(torch.isfinite(smallest), index, torch.full_like(index, -1))
        chosen = distances.gather(2, index.clamp_min(0)[..., None, None].expand(-1, -1, 1, 4))
        return index, chosen[:, :, 0]

    def ranges(self, stride: Tensor) -> tuple[Tensor, Tensor]:
        """Per cell, the (low, high] range of largest edge distance its level regresses."""
        levels = torch.unique(stride)  # sorted, finest first
        high = self.range_factor * stride
        low = torch.where(stride == levels[0], torch.zeros_like(stride), high / 2)
        high = torch.where(stride == levels[-1], torch.full_like(stride, float("inf")), high)
        return low, high

    def loss(
        self, outputs: Tensor, priors: Tensor, targets: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        out = outputs.float()
        boxes, classes = targets["boxes"].float(), targets["classes"]
        index, distances = self.assign(priors, boxes, classes)
        positive = index >= 0
        num_pos = positive.sum().clamp_min(1).float()
        labels = classes.gather(1, index.clamp_min(0))  # (B, P)
        onehot = torch.zeros_like(out[..., 5:])
        onehot[positive] = F.one_hot(labels[positive], out.shape[-1] - 5).to(onehot.dtype)
        cls = sigmoid_focal_loss(out[..., 5:], onehot, self.alpha, self.gamma).sum() / num_pos
        centre = centerness(distances[positive])
        pred = to_boxes(out[..., :4][positive], priors.expand(len(out), -1, -1)[positive])
        truth = to_boxes(distances[positive], priors.expand(len(out), -1, -1)[positive])
        giou = generalized_box_iou_loss(pred, truth, reduction="none")
        box = (giou * centre).sum() / centre.sum().clamp_min(1e-6)
        ctr = F.binary_cross_entropy_with_logits(out[..., 4][positive], centre, reduction="sum")
        return {"loss": cls + box + ctr / num_pos, "cls": cls, "box": box, "ctr": ctr / num_pos}

    def decode(self, outputs: Tensor, priors: Tensor) -> tuple[Tensor, Tensor]:
        """Boxes (B, P, 4) and class scores (B, P, K): sqrt(class x centre-ness)."""
        out = outputs.float()
        boxes = to_boxes(out[..., :4], priors.expand(len(out), -1, -1))
        scores = (torch.sigmoid(out[..., 5:]) * torch.sigmoid(out[..., 4:5])).sqrt()
        return boxes, scores

    def mirror(self, outputs: Tensor) -> Tensor:
        """Outputs of a mirrored image, read as the original's: left and right swap."""
        return outputs[..., [2, 1, 0, 3, *range(4, outputs.shape[-1])]]


def to_boxes(distances: Tensor, priors: Tensor) -> Tensor:
    """Edge distances (l, t, r, b) from cell centres -> xyxy boxes (same leading shape)."""
    cx, cy = priors[..., 0], priors[..., 1]
    left, top, right, bottom = distances.unbind(-1)
    return torch.stack([cx - left, cy - top, cx + right, cy + bottom], -1)


def centerness(distances: Tensor) -> Tensor:
    """FCOS's centre-ness target sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b))."""
    lr, tb = distances[:, [0, 2]], distances[:, [1, 3]]
    ratio = (lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values)
    return ratio.clamp_min(0).sqrt()


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Focal loss (Lin et al. 2017) per element: the BCE of easy, well-classified cells is
    scaled down by (1 - p_t)^gamma, so the many background cells do not drown the few
    positives."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return weight * ce * (1 - p_t) ** gamma


# -- SSD -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SsdRule:
    """SSD's matching: a default box is positive for the box it overlaps most when that
    IoU >= ``iou_threshold``, and every box claims its best default box; losses: smooth
    L1 on encoded offsets of positives, cross-entropy on positives and the hardest
    negatives (``neg_pos_ratio`` per positive), both divided by the positives."""

    iou_threshold: float = 0.5
    neg_pos_ratio: int = 3

    def match(self, priors: Tensor, boxes: Tensor, classes: Tensor) -> Tensor:
        """(B, P) index of each default box's matched box, -1 for background."""
        valid = classes >= 0  # (B, M)
        corners = box_convert(priors, "cxcywh", "xyxy")
        iou = torch.stack([box_iou(corners, b) for b in boxes])  # (B, P, M)
        iou = torch.where(valid[:, None, :], iou, torch.full_like(iou, -1.0))
        best_iou, index = iou.max(-1)
        index = torch.where(best_iou >= self.iou_threshold, index, torch.full_like(index, -1))
        best_prior = iou.argmax(1)  # (B, M): each box claims its best default box
        for m in range(boxes.shape[1]):
            rows = valid[:, m].nonzero().flatten()
            index[rows, best_prior[rows, m]] = m
        return index

    def loss(
        self, outputs: Tensor, priors: Tensor, targets: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        out = outputs.float()
        boxes, classes = targets["boxes"].float(), targets["classes"]
        index = self.match(priors, boxes, classes)
        positive = index >= 0
        num_pos = positive.sum().clamp_min(1).float()
        matched = boxes.gather(1, index.clamp_min(0)[..., None].expand(-1, -1, 4))
        wanted = encode(matched[positive], priors.expand(len(out), -1, -1)[positive])
        loc = F.smooth_l1_loss(out[..., :4][positive], wanted, reduction="sum") / num_pos
        labels = torch.where(positive, classes.gather(1, index.clamp_min(0)) + 1, 0)
        ce = F.cross_entropy(out[..., 4:].transpose(1, 2), labels, reduction="none")  # (B, P)
        # Hard negatives: per image, the 3 x positives background boxes with the highest loss.
        negative_ce = torch.where(positive, torch.full_like(ce, -1.0), ce)
        rank = negative_ce.argsort(1, descending=True).argsort(1)
        hard = rank < self.neg_pos_ratio * positive.sum(1, keepdim=True)
        conf = ce[positive | hard].sum() / num_pos
        return {"loss": loc + conf, "loc": loc, "conf": conf}

    def decode(self, outputs: Tensor, priors: Tensor) -> tuple[Tensor, Tensor]:
        """Boxes (B, P, 4) and class probabilities (B, P, K), background dropped."""
        out = outputs.float()
        boxes = decode(out[..., :4], priors.expand(len(out), -1, -1))
        return boxes, torch.softmax(out[..., 4:], -1)[..., 1:]

    def mirror(self, outputs: Tensor) -> Tensor:
        """Outputs of a mirrored image, read as the original's: the x offset changes sign."""
        return torch.cat([-outputs[..., :1], outputs[..., 1:]], -1)


def encode(boxes: Tensor, priors: Tensor) -> Tensor:
    """xyxy boxes -> SSD offsets against (cx, cy, w, h) default boxes."""
    c = box_convert(boxes, "xyxy", "cxcywh")
    centre = (c[..., :2] - priors[..., :2]) / (SSD_VARIANCES[0] * priors[..., 2:])
    size = torch.log(c[..., 2:].clamp_min(1e-6) / priors[..., 2:]) / SSD_VARIANCES[1]
    return torch.cat([centre, size], -1)


def decode(offsets: Tensor, priors: Tensor) -> Tensor:
    """SSD offsets -> xyxy boxes: the inverse of :func:`encode`."""
    centre = priors[..., :2] + offsets[..., :2] * SSD_VARIANCES[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp((offsets[..., 2:] * SSD_VARIANCES[1]).clamp(max=8.0))
    return box_convert(torch.cat([centre, size], -1), "cxcywh", "xyxy")


# -- from candidates to detections ----------------------------------------------------------


def select(
    boxes: Tensor, scores: Tensor, size: tuple[int, int], settings: DecodeSettings
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's detections: boxes (n, 4) clipped to ``size`` (H, W), scores (n,) and
    labels (n,), best first, after the score threshold, top-k and class-aware NMS."""
    flat = scores.flatten()  # (P * K,): one candidate per (cell, class)
    keep = (flat > settings.score_threshold).nonzero().flatten()
    if len(keep) > settings.pre_nms:
        keep = keep[flat[keep].topk(settings.pre_nms).indices]
    K = scores.shape[-1]
    cells, labels = keep // K, keep % K
    H, W = size
    limit = torch.tensor([W, H, W, H], dtype=boxes.dtype)
    chosen = torch.minimum(boxes[cells].clamp_min(0), limit)
    kept = batched_nms(chosen, flat[keep], labels, settings.iou_threshold, settings.max_detections)
    return chosen[kept], flat[keep][kept], labels[kept]
