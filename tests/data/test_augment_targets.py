"""Tests for target-aware augmentation: masks, keypoints and boxes move with the pixels.

The oracle is always the augmented image itself: each test draws the image from the
targets (a mask as grey levels, a keypoint as a bright pixel or blob, a box as a filled
rectangle in its own channel), augments image and targets in one call, and reads the
moved targets back off the augmented pixels.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.data.affine import affine_matrices
from cnnlab.data.augment import (
    AlternatingFlip,
    Augment,
    RandomAffine,
    RandomCrop,
    RandomFlip,
    build_augment,
)
from cnnlab.data.loader import BatchLoader, Normalize
from cnnlab.data.targets import affine_targets, flip_targets, shift_targets

H, W = 12, 15  # non-square, so a swapped x / y shows
K = 4  # mask classes 0..K; the image of a mask is mask / K


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_masks(b: int = 32, seed: int = 0) -> torch.Tensor:
    """(B, H, W) int64 class maps of noise: every pixel differs from its neighbours."""
    return torch.randint(0, K + 1, (b, H, W), generator=gen(seed + 1))


def mask_image(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) float image whose grey levels encode the mask."""
    return (mask.to(torch.float32) / K)[:, None]


def read_mask(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] * K).round().to(torch.int64)


def spot_images(kp: torch.Tensor, size: tuple[int, int] = (H, W)) -> torch.Tensor:
    """(B, P, H, W): channel p is 1 at keypoint p (integer x, y) and 0 elsewhere."""
    B, P, _ = kp.shape
    x = torch.zeros(B, P, *size)
    b, p = torch.meshgrid(torch.arange(B), torch.arange(P), indexing="ij")
    x[b, p, kp[..., 1].long(), kp[..., 0].long()] = 1.0
    return x


def blob_images(kp: torch.Tensor, size: tuple[int, int], sigma: float = 1.0) -> torch.Tensor:
    """(B, P, H, W): channel p is a Gaussian blob centred on keypoint p."""
    ys = torch.arange(size[0], dtype=torch.float64)[:, None]
    xs = torch.arange(size[1], dtype=torch.float64)[None, :]
    kx, ky = kp[..., 0, None, None].double(), kp[..., 1, None, None].double()
    return torch.exp(-((xs - kx) ** 2 + (ys - ky) ** 2) / (2 * sigma**2)).float()


def argmax_xy(x: torch.Tensor) -> torch.Tensor:
    """(B, P, H, W) -> (B, P, 2): the (x, y) of each channel's brightest pixel."""
    flat = x.flatten(2).argmax(dim=2)
    return torch.stack([flat % x.shape[3], flat // x.shape[3]], dim=-1).to(torch.float32)


def centroid_xy(x: torch.Tensor) -> torch.Tensor:
    """(B, P, H, W) -> (B, P, 2): each channel's brightness-weighted (x, y)."""
    x = x.double()
    ys = torch.arange(x.shape[2], dtype=torch.float64)[:, None]
    xs = torch.arange(x.shape[3], dtype=torch.float64)[None, :]
    total = x.sum(dim=(2, 3))
    return torch.stack([(x * xs).sum(dim=(2, 3)) / total, (x * ys).sum(dim=(2, 3)) / total], dim=-1)


def random_boxes(
    b: int, m: int, seed: int = 0, min_side: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M, 4) integer boxes of min_side..5 px per side anywhere in the image, and their
    classes; the last row of every sample is padding (class -1, box 0)."""
    g = gen(seed + 2)
    w = torch.randint(min_side, 6, (b, m), generator=g)
    h = torch.randint(min_side, 6, (b, m), generator=g)
    x0 = (torch.rand(b, m, generator=g) * (W - w + 1)).long()
    y0 = (torch.rand(b, m, generator=g) * (H - h + 1)).long()
    boxes = torch.stack([x0, y0, x0 + w, y0 + h], dim=-1).float()
    classes = torch.randint(0, 3, (b, m), generator=g)
    boxes[:, -1] = 0.0
    classes[:, -1] = -1
    return boxes, classes


def box_images(
    boxes: torch.Tensor, classes: torch.Tensor, size: tuple[int, int] = (H, W)
) -> torch.Tensor:
    """(B, M, H, W): channel m is box m filled with 1 (empty for padding rows)."""
    cols = torch.arange(size[1])[None, None, None, :]
    rows = torch.arange(size[0])[None, None, :, None]
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    inside = (cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)
    return (inside & (classes >= 0)[..., None, None]).float()


def pixel_bounds(x: torch.Tensor, above: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M, H, W) -> the tight (x0, y0, x1, y1) of the pixels > `above` per channel (x1, y1
    exclusive) and (B, M) bool: the channel has such pixels."""
    on = x > above
    any_col, any_row = on.any(dim=2), on.any(dim=3)  # (B, M, W), (B, M, H)
    cols, rows = torch.arange(x.shape[3]).float(), torch.arange(x.shape[2]).float()
    big = float(max(x.shape[2:]) + 1)
    x0 = torch.where(any_col, cols, big).amin(dim=2)
    x1 = torch.where(any_col, cols, -big).amax(dim=2) + 1
    y0 = torch.where(any_row, rows, big).amin(dim=2)
    y1 = torch.where(any_row, rows, -big).amax(dim=2) + 1
    return torch.stack([x0, y0, x1, y1], dim=-1), on.flatten(2).any(dim=2)


# ---------------------------------------------------------------- 1. masks


MASK_SPECS: list[Any] = [
    "flip",
    "vflip",
    {"name": "flip", "vertical": True},
    {"name": "crop", "padding": 3},
    {"name": "affine", "mode": "nearest"},
    {"name": "rotate", "degrees": 45.0, "mode": "nearest"},
    {"name": "zoom", "scale": (0.5, 1.5), "mode": "nearest"},
    {"name": "shear", "shear": 30.0, "mode": "nearest"},
    {"name": "shift", "translate": (0.3, 0.3), "mode": "nearest"},
    ["flip", {"name": "crop", "padding": 3}, {"name": "affine", "mode": "nearest"}],
]


@pytest.mark.parametrize("spec", MASK_SPECS, ids=repr)
def test_mask_moves_with_pixels(spec: Any) -> None:
    mask = random_masks()
    aug = build_augment(spec)
    assert aug is not None
    x, targets = aug(mask_image(mask), gen(3), targets={"mask": mask})
    assert targets["mask"].dtype == mask.dtype and targets["mask"].shape == mask.shape
    torch.testing.assert_close(read_mask(x), targets["mask"], rtol=0, atol=0)
    assert not torch.equal(targets["mask"], mask)  # the draw did move something


def test_mask_follows_affine_for_float64_images() -> None:
    # the image grid is built in float64, the mask grid in float32: nearest must still agree
    mask = random_masks(64)
    aug = Augment(
        [RandomAffine(degrees=45.0, translate=(0.2, 0.2), scale=(0.5, 1.5), mode="nearest")]
    )
    x, targets = aug(mask_image(mask).double(), gen(5), targets={"mask": mask})
    torch.testing.assert_close(read_mask(x), targets["mask"], rtol=0, atol=0)


@pytest.mark.parametrize("epoch", [0, 1])
def test_mask_follows_alternating_flip(epoch: int) -> None:
    mask = random_masks(16)
    indices = torch.arange(100, 116)
    aug = build_augment("altflip")
    assert aug is not None
    x, targets = aug(mask_image(mask), gen(), indices=indices, epoch=epoch, targets={"mask": mask})
    torch.testing.assert_close(read_mask(x), targets["mask"], rtol=0, atol=0)
    # the flipped samples are those the schedule names, and no others
    flipped = AlternatingFlip.flips(indices, epoch)
    expected = torch.where(flipped[:, None, None], mask.flip(2), mask)
    torch.testing.assert_close(targets["mask"], expected, rtol=0, atol=0)
    assert 0 < int(flipped.sum()) < len(flipped)


def test_mask_crop_padding_is_background() -> None:
    mask = torch.full((32, H, W), 3)  # no background inside: any 0 comes from the padding
    aug = build_augment({"name": "crop", "padding": 3})
    assert aug is not None
    x, targets = aug(mask_image(mask), gen(), targets={"mask": mask})
    torch.testing.assert_close(read_mask(x), targets["mask"], rtol=0, atol=0)
    assert bool((targets["mask"] == 0).any())


def test_shift_targets_mask_against_roll() -> None:
    # a mask with a zero border rolled by (dy, dx) is the same as the shift: an oracle by hand
    mask = torch.zeros(3, H, W, dtype=torch.int64)
    mask[:, 3:-3, 3:-3] = torch.randint(1, K + 1, (3, H - 6, W - 6), generator=gen())
    dx, dy = torch.tensor([2, -3, 0]), torch.tensor([-1, 3, 0])
    moved = shift_targets({"mask": mask}, dx, dy, (H, W))["mask"]
    for i in range(3):
        expected = mask[i].roll((int(dy[i]), int(dx[i])), dims=(0, 1))
        torch.testing.assert_close(moved[i], expected, rtol=0, atol=0)


# ---------------------------------------------------------------- 2. keypoints


def random_keypoints(b: int, p: int, seed: int = 0) -> torch.Tensor:
    g = gen(seed + 3)
    xs = torch.randint(0, W, (b, p), generator=g)
    ys = torch.randint(0, H, (b, p), generator=g)
    return torch.stack([xs, ys], dim=-1).float()


@pytest.mark.parametrize("spec", ["flip", "vflip", {"name": "flip", "vertical": True}])
def test_keypoints_follow_flips_to_the_pixel(spec: Any) -> None:
    kp = random_keypoints(32, 1)
    aug = build_augment(spec)
    assert aug is not None
    x, targets = aug(spot_images(kp), gen(1), targets={"keypoints": kp})
    torch.testing.assert_close(targets["keypoints"], argmax_xy(x), rtol=0, atol=0)
    assert not torch.equal(targets["keypoints"], kp)


def test_keypoints_follow_crop_and_leave_the_image() -> None:
    kp = random_keypoints(128, 1)
    aug = build_augment({"name": "crop", "padding": 3})
    assert aug is not None
    x, targets = aug(spot_images(kp), gen(2), targets={"keypoints": kp})
    still_there = x.flatten(1).amax(dim=1) > 0  # (B,) the bright pixel survived the crop
    visible = targets["visible"][:, 0]
    torch.testing.assert_close(visible, still_there, rtol=0, atol=0)
    torch.testing.assert_close(targets["keypoints"][visible], argmax_xy(x)[visible], rtol=0, atol=0)
    assert 0 < int(visible.sum()) < len(visible)  # both outcomes occurred


def test_shift_targets_hides_points_pushed_out() -> None:
    kp = torch.tensor([[[0.0, 5.0], [W - 1.0, 0.0], [4.0, H - 1.0]]])  # (1, 3, 2)
    visible = torch.tensor([[True, True, False]])
    out = shift_targets(
        {"keypoints": kp, "visible": visible}, torch.tensor([-1]), torch.tensor([1]), (H, W)
    )
    torch.testing.assert_close(out["keypoints"], kp + torch.tensor([-1.0, 1.0]))
    # x = -1 is out; (W - 2, 1) is in; the third was unknown and stays so (y = H is out too)
    assert out["visible"].tolist() == [[False, True, False]]


BLOB_SIZE = (32, 40)


@pytest.mark.parametrize(
    "op",
    [
        RandomAffine(degrees=30.0),
        RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10.0),
        RandomAffine(scale=(0.7, 1.3)),
        RandomAffine(shear=20.0),
    ],
    ids=["rotate", "affine", "zoom", "shear"],
)
def test_keypoints_follow_bilinear_affine(op: RandomAffine) -> None:
    g = gen(4)
    # points near the centre, so the blobs stay whole inside the image after the transform
    kp = torch.stack(
        [torch.randint(15, 25, (16, 2), generator=g), torch.randint(12, 20, (16, 2), generator=g)],
        dim=-1,
    ).float()
    x, targets = Augment([op])(blob_images(kp, BLOB_SIZE), gen(5), targets={"keypoints": kp})
    error = (targets["keypoints"].double() - centroid_xy(x)).abs()
    assert float(error.max()) < 0.5, error.max()
    assert bool(targets["visible"].all())
    moved = (targets["keypoints"] - kp).abs().amax()
    assert float(moved) > 1.0  # the transform did move the points


def test_flip_index_swaps_left_and_right() -> None:
    # point 0 is the left eye, point 1 the right eye; each has its own image channel
    kp = torch.tensor([[[3.0, 4.0], [10.0, 5.0]]]).repeat(32, 1, 1)
    visible = torch.tensor([[True, False]]).repeat(32, 1)
    x0 = spot_images(kp)
    aug = build_augment("flip")
    assert aug is not None
    x, t = aug(x0, gen(6), targets={"keypoints": kp, "visible": visible}, flip_index=[1, 0])
    flipped = (x == x0.flip(3)).flatten(1).all(dim=1)
    assert bool(((x == x0).flatten(1).all(dim=1) ^ flipped).all())  # each sample one or other
    assert 0 < int(flipped.sum()) < len(flipped)
    # a mirrored left eye becomes the right eye: target k is where channel order[k] went
    order = torch.where(flipped[:, None], torch.tensor([1, 0]), torch.tensor([0, 1]))
    spots = argmax_xy(x)
    expected = torch.stack([spots[torch.arange(32), order[:, k]] for k in range(2)], dim=1)
    torch.testing.assert_close(t["keypoints"], expected, rtol=0, atol=0)
    torch.testing.assert_close(t["visible"], visible.gather(1, order), rtol=0, atol=0)
    # left stays left of right, flipped or not
    assert bool((t["keypoints"][:, 0, 0] < t["keypoints"][:, 1, 0]).all())


def test_flip_twice_is_identity() -> None:
    kp = random_keypoints(8, 3)
    visible = torch.rand(8, 3, generator=gen()) > 0.3
    boxes, classes = random_boxes(8, 3)
    targets = {"keypoints": kp, "visible": visible, "boxes": boxes, "classes": classes}
    targets["mask"] = random_masks(8)
    aug = Augment([RandomFlip(horizontal=True, vertical=True, p=1.0)] * 2)
    x0 = torch.rand(8, 2, H, W, generator=gen())
    x, out = aug(x0, gen(), targets=targets, flip_index=[2, 1, 0])
    torch.testing.assert_close(x, x0, rtol=0, atol=0)
    for key, value in targets.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=0, msg=key)
    once = flip_targets(targets, torch.ones(8, dtype=torch.bool), None, (H, W), [2, 1, 0])
    assert not torch.equal(once["keypoints"], kp)


def test_flip_index_of_wrong_length_names_both_sizes() -> None:
    kp = random_keypoints(4, 2)
    with pytest.raises(ShapeMismatchError, match=r"3 entries.*\(4, 2, 2\)"):
        flip_targets({"keypoints": kp}, torch.ones(4, dtype=torch.bool), None, (H, W), [1, 0, 2])
    aug = Augment([RandomFlip(p=1.0)])
    with pytest.raises(ShapeMismatchError, match=r"3 entries.*\(4, 2, 2\)"):
        aug(torch.rand(4, 1, H, W), gen(), targets={"keypoints": kp}, flip_index=[1, 0, 2])


def test_flip_index_of_wrong_length_fails_even_when_nothing_flips() -> None:
    kp = random_keypoints(4, 2)
    with pytest.raises(ShapeMismatchError):
        flip_targets({"keypoints": kp}, torch.zeros(4, dtype=torch.bool), None, (H, W), [1, 0, 2])


def test_altflip_with_targets_checks_index_count() -> None:
    aug = build_augment("altflip")
    assert aug is not None
    mask = random_masks(4)
    with pytest.raises(ShapeMismatchError):
        aug(mask_image(mask), gen(), indices=torch.tensor([1]), targets={"mask": mask})


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_masks_follow_reflected_and_replicated_crop_padding(mode: str) -> None:
    mask = random_masks(6).clamp_min(1)  # no background: padding must come from the mask
    aug = build_augment({"name": "crop", "padding": 2, "padding_mode": mode})
    assert aug is not None
    x, moved = aug(mask_image(mask), gen(), targets={"mask": mask})
    assert torch.equal(torch.round(x[:, 0] * 4).long(), moved["mask"].long())


@pytest.mark.parametrize(
    ("horizontal", "vertical", "swapped"), [(False, True, True), (True, True, False)]
)
def test_any_mirror_swaps_left_and_right_but_a_half_turn_does_not(
    horizontal: bool, vertical: bool, swapped: bool
) -> None:
    kp = random_keypoints(4, 2)
    aug = Augment([RandomFlip(horizontal=horizontal, vertical=vertical, p=1.0)])
    _, moved = aug(torch.rand(4, 1, H, W), gen(), targets={"keypoints": kp}, flip_index=[1, 0])
    order = [1, 0] if swapped else [0, 1]
    expected_x = (W - 1) - kp[:, order, 0] if horizontal else kp[:, order, 0]
    expected_y = (H - 1) - kp[:, order, 1] if vertical else kp[:, order, 1]
    torch.testing.assert_close(moved["keypoints"], torch.stack([expected_x, expected_y], -1))


# ---------------------------------------------------------------- 3. boxes


@pytest.mark.parametrize(
    "spec", ["flip", "vflip", {"name": "crop", "padding": 3}, ["flip", "vflip", "crop"]], ids=repr
)
def test_boxes_are_the_tight_bounds_after_flips_and_crops(spec: Any) -> None:
    boxes, classes = random_boxes(64, 4)
    aug = build_augment(spec)
    assert aug is not None
    x, t = aug(box_images(boxes, classes), gen(7), targets={"boxes": boxes, "classes": classes})
    bounds, present = pixel_bounds(x, above=0.5)
    kept = t["classes"] >= 0
    torch.testing.assert_close(kept, present, rtol=0, atol=0)  # emptied iff no pixel left
    torch.testing.assert_close(t["boxes"][kept], bounds[kept], rtol=0, atol=0)
    torch.testing.assert_close(t["classes"][kept], classes[kept], rtol=0, atol=0)
    assert bool((t["classes"][:, -1] == -1).all())  # padding stays padding
    assert not torch.equal(t["boxes"][kept], boxes[kept])


def test_crop_empties_boxes_pushed_out() -> None:
    boxes, classes = random_boxes(128, 4)
    aug = build_augment({"name": "crop", "padding": 3})
    assert aug is not None
    x, t = aug(box_images(boxes, classes), gen(8), targets={"boxes": boxes, "classes": classes})
    emptied = (classes >= 0) & (t["classes"] == -1)
    assert int(emptied.sum()) > 0  # the draw pushed some boxes out
    assert bool((x[emptied] == 0).all())
    assert bool((t["boxes"][emptied] == 0).all())


def test_shift_targets_boxes_by_hand() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 2.0, 3.0], [5.0, 5.0, 9.0, 8.0], [0.0, 0.0, 0.0, 0.0]]])
    classes = torch.tensor([[1, 2, -1]])
    out = shift_targets(
        {"boxes": boxes, "classes": classes}, torch.tensor([-2]), torch.tensor([1]), (H, W)
    )
    # box 0 leaves through the left edge (x1 = 0); box 1 shifts whole; padding stays padding
    expected = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [3.0, 6.0, 7.0, 9.0], [0.0, 0.0, 0.0, 0.0]]])
    torch.testing.assert_close(out["boxes"], expected)
    assert out["classes"].tolist() == [[-1, 2, -1]]


@pytest.mark.parametrize(
    ("op", "above"),
    [
        (RandomAffine(degrees=30.0, mode="nearest"), 0.0),
        (RandomAffine(degrees=30.0), 0.5),
        (
            RandomAffine(
                degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10.0, mode="nearest"
            ),
            0.0,
        ),
        (RandomAffine(degrees=20.0, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10.0), 0.5),
    ],
    ids=["rotate-nearest", "rotate-bilinear", "affine-nearest", "affine-bilinear"],
)
def test_boxes_enclose_pixels_after_rotation(op: RandomAffine, above: float) -> None:
    # bilinear values above 0.5 and nearest values above 0 both come from inside the
    # transformed rectangle, which the transformed box must enclose
    boxes, classes = random_boxes(64, 4, seed=9, min_side=3)
    x, t = Augment([op])(
        box_images(boxes, classes), gen(10), targets={"boxes": boxes, "classes": classes}
    )
    bounds, present = pixel_bounds(x, above=above)
    kept = t["classes"] >= 0
    assert bool((present <= kept).all())  # no pixels of an emptied box
    both = present & kept
    # the box holds every such pixel's centre: box x0 <= column + 0.5 (x0 is an outer edge)
    low = bounds[both][:, :2] + 0.5 - t["boxes"][both][:, :2]  # >= 0 when enclosed
    high = t["boxes"][both][:, 2:] - (bounds[both][:, 2:] - 0.5)
    slack = torch.cat([low, high], dim=1)
    assert float(slack.min()) >= -1e-4, slack.min()
    # and, for boxes that stay whole inside the image (clipping cuts the rotated rectangle
    # but not its enclosing box), is no looser than the corners allow: a pixel centre lies
    # within ~1.8 px of a corner of >= 80 degrees (the grid's covering radius is sqrt(2) / 2)
    box = t["boxes"][both]
    whole = (box[:, 0] > 0) & (box[:, 1] > 0) & (box[:, 2] < W) & (box[:, 3] < H)
    assert int(whole.sum()) > 10
    assert float(slack[whole].max()) < 1.85, slack[whole].max()
    assert bool((t["classes"][:, -1] == -1).all())


def test_affine_targets_quarter_turn_against_rot90() -> None:
    # angle > 0 turns the content counter-clockwise on screen, as torch.rot90 does
    S = 9
    theta = affine_matrices(
        torch.tensor([90.0]), torch.zeros(1, 2), torch.ones(1), torch.zeros(1), (S, S)
    )
    kp = torch.tensor([[[1.0, 2.0], [6.0, 0.0]]])
    boxes = torch.tensor([[[1.0, 2.0, 4.0, 3.0], [0.0, 5.0, 9.0, 9.0]]])
    classes = torch.tensor([[0, 1]])
    mask = torch.randint(0, K + 1, (1, S, S), generator=gen())
    targets = {"mask": mask, "keypoints": kp, "boxes": boxes, "classes": classes}
    out = affine_targets(targets, theta, (S, S))
    torch.testing.assert_close(out["mask"], mask.rot90(1, dims=(1, 2)), rtol=0, atol=0)
    spots = spot_images(kp, (S, S)).rot90(1, dims=(2, 3))
    torch.testing.assert_close(out["keypoints"], argmax_xy(spots), atol=1e-5, rtol=0)
    bounds, _ = pixel_bounds(box_images(boxes, classes, (S, S)).rot90(1, dims=(2, 3)), 0.5)
    torch.testing.assert_close(out["boxes"], bounds, atol=1e-5, rtol=0)
    assert out["classes"].tolist() == [[0, 1]]


# ---------------------------------------------------------------- 4. same draw with targets


SAME_DRAW_SPECS: list[Any] = [
    "flip",
    "altflip",
    "vflip",
    "crop",
    {"name": "crop", "padding_mode": "reflect", "padding": 2},
    "affine",
    "shift",
    "rotate",
    "zoom",
    "shear",
    "erase",
    "flip,crop,affine,erase",
]


@pytest.mark.parametrize("spec", SAME_DRAW_SPECS, ids=repr)
def test_same_draw_with_or_without_targets(spec: Any) -> None:
    B = 64
    x = torch.rand(B, 3, H, W, generator=gen(11))
    boxes, classes = random_boxes(B, 3)
    targets = {
        "mask": random_masks(B),
        "keypoints": random_keypoints(B, 2),
        "boxes": boxes,
        "classes": classes,
    }
    aug = build_augment(spec)
    assert aug is not None
    g1, g2 = gen(12), gen(12)
    plain = aug(x, g1)
    with_targets, _ = aug(x, g2, targets=targets, flip_index=[1, 0])
    torch.testing.assert_close(with_targets, plain, rtol=0, atol=0)
    assert torch.equal(g1.get_state(), g2.get_state())  # the next batch draws alike too
    assert not torch.equal(plain, x)


def test_same_draw_with_positions() -> None:
    x = torch.rand(8, 3, H, W, generator=gen(13))
    aug = build_augment("altflip,crop")
    assert aug is not None
    indices = torch.arange(8)
    g1, g2 = gen(14), gen(14)
    plain = aug(x, g1, indices=indices, epoch=3)
    moved, _ = aug(x, g2, indices=indices, epoch=3, targets={"mask": random_masks(8)})
    torch.testing.assert_close(moved, plain, rtol=0, atol=0)
    assert torch.equal(g1.get_state(), g2.get_state())


# ---------------------------------------------------------------- 5. BatchLoader


def loader_data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 images that encode their masks (value = 50 * class), masks, labels 0..n-1."""
    mask = random_masks(n, seed=20)
    images = (mask * 50).to(torch.uint8)[:, None]
    return images, mask, torch.arange(n)


def identity() -> Normalize:
    return Normalize([0.0], [1.0])


def test_loader_moves_masks_with_images() -> None:
    images, mask, labels = loader_data()
    aug = build_augment(
        ["flip", {"name": "crop", "padding": 3}, {"name": "affine", "mode": "nearest"}]
    )
    loader = BatchLoader(
        images, {"mask": mask, "label": labels}, 8, identity(),
        shuffle=True, augment=aug, generator=gen(21),
    )  # fmt: skip
    seen = []
    for x, y in loader:
        assert isinstance(y, dict) and set(y) >= {"mask", "label"}
        torch.testing.assert_close((x[:, 0] * 255 / 50).round().long(), y["mask"], rtol=0, atol=0)
        seen.append(y["label"])
    assert sorted(torch.cat(seen).tolist()) == labels.tolist()


def test_loader_pairs_flipped_masks_with_their_labels() -> None:
    images, mask, labels = loader_data()
    loader = BatchLoader(
        images, {"mask": mask, "label": labels}, 8, identity(),
        shuffle=True, augment=build_augment("flip"), generator=gen(22),
    )  # fmt: skip
    flips = 0
    for x, y in loader:
        source = mask[y["label"]]  # labels are the row numbers: the untouched masks
        is_flipped = (y["mask"] == source.flip(2)).flatten(1).all(dim=1)
        is_same = (y["mask"] == source).flatten(1).all(dim=1)
        assert bool((is_flipped | is_same).all())
        torch.testing.assert_close((x[:, 0] * 255 / 50).round().long(), y["mask"], rtol=0, atol=0)
        flips += int(is_flipped.sum())
    assert 0 < flips < len(labels)


def test_loader_passes_positions_and_flip_index() -> None:
    n = 16
    kp = torch.tensor([[[2.0, 3.0], [9.0, 3.0]]]).repeat(n, 1, 1)
    images = (spot_images(kp) * 255).to(torch.uint8)
    loader = BatchLoader(
        images, {"keypoints": kp, "label": torch.arange(n)}, 8, Normalize([0.0, 0.0], [1.0, 1.0]),
        augment=build_augment("altflip"), generator=gen(), flip_index=[1, 0],
    )  # fmt: skip
    loader.epoch = 1
    for x, y in loader:
        flipped = AlternatingFlip.flips(y["label"], 1)
        order = torch.where(flipped[:, None], torch.tensor([1, 0]), torch.tensor([0, 1]))
        spots = argmax_xy(x)
        expected = torch.stack([spots[torch.arange(len(x)), order[:, k]] for k in range(2)], 1)
        torch.testing.assert_close(y["keypoints"], expected, rtol=0, atol=0)
        assert bool((y["keypoints"][:, 0, 0] < y["keypoints"][:, 1, 0]).all())


def test_loader_with_plain_labels_yields_tensors() -> None:
    images, _, labels = loader_data()
    loader = BatchLoader(
        images,
        labels,
        8,
        identity(),
        shuffle=True,
        augment=build_augment("flip,crop"),
        generator=gen(23),
    )
    seen = []
    for x, y in loader:
        assert isinstance(y, torch.Tensor) and y.dtype == torch.int64
        assert x.shape == (len(y), 1, H, W)
        seen.append(y)
    assert sorted(torch.cat(seen).tolist()) == labels.tolist()


def test_loader_with_label_dict_only_keeps_labels() -> None:
    images, _, labels = loader_data()
    plain = BatchLoader(
        images, labels, 8, identity(), augment=build_augment("flip,crop"), generator=gen(24)
    )
    as_dict = BatchLoader(
        images,
        {"label": labels},
        8,
        identity(),
        augment=build_augment("flip,crop"),
        generator=gen(24),
    )
    for (x1, y1), (x2, y2) in zip(plain, as_dict, strict=True):
        torch.testing.assert_close(x2, x1, rtol=0, atol=0)
        assert isinstance(y2, dict)
        torch.testing.assert_close(y2["label"], y1, rtol=0, atol=0)


# ---------------------------------------------------------------- 6. erasing


def test_erasing_leaves_targets_untouched() -> None:
    boxes, classes = random_boxes(16, 3)
    targets = {
        "mask": random_masks(16),
        "keypoints": random_keypoints(16, 2),
        "visible": torch.ones(16, 2, dtype=torch.bool),
        "boxes": boxes,
        "classes": classes,
    }
    x0 = 0.1 + torch.rand(16, 3, H, W, generator=gen())
    aug = build_augment({"name": "erase", "p": 1.0})
    assert aug is not None
    x, out = aug(x0, gen(25), targets=targets)
    assert not torch.equal(x, x0)  # it did erase
    assert set(out) == set(targets)
    for key, value in targets.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=0, msg=key)


def test_crop_moves_targets_by_the_pixel_shift() -> None:
    # the content shift is read from the pixels (a unique-valued image), not from the op
    B = 16
    x0 = torch.arange(B * H * W, dtype=torch.float32).view(B, 1, H, W) + 1
    kp = torch.tensor([[[7.0, 6.0]]]).repeat(B, 1, 1)
    op = RandomCrop(padding=2)
    x, t = Augment([op])(x0, gen(26), targets={"keypoints": kp})
    centre = x0[:, 0, 6, 7]
    where = (x[:, 0] == centre[:, None, None]).flatten(1).float().argmax(dim=1)
    found = torch.stack([where % W, where // W], dim=-1).float()
    torch.testing.assert_close(t["keypoints"][:, 0], found, rtol=0, atol=0)
