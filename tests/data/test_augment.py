"""Tests for batched augmentation: every op against a PyTorch oracle, plus config parsing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab.core.errors import ConfigError, ShapeMismatchError, UnknownNameError
from cnnlab.data.affine import affine_grid, affine_matrices, apply_affine
from cnnlab.data.augment import (
    Augment,
    AugmentOp,
    RandomAffine,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    build_augment,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 8, c: int = 3, h: int = 7, w: int = 10, seed: int = 0) -> torch.Tensor:
    """Random images in [0.1, 1): asymmetric, so any flip or erase changes them."""
    return 0.1 + 0.9 * torch.rand(b, c, h, w, generator=gen(seed + 100))


def affine(
    x: torch.Tensor,
    angle: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    scale: float = 1.0,
    shear: float = 0.0,
    fill: float = 0.0,
) -> torch.Tensor:
    """Applies one hand-chosen transform (degrees, pixels) to every image of the batch."""
    B, _, H, W = x.shape
    theta = affine_matrices(
        torch.full((B,), float(angle)),
        torch.tensor([[tx, ty]], dtype=torch.float64).expand(B, 2),
        torch.full((B,), float(scale)),
        torch.full((B,), float(shear)),
        (H, W),
    )
    return apply_affine(x, theta, fill=fill)


ALL_OPS: list[AugmentOp] = [
    RandomFlip(horizontal=True, vertical=True),
    RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10),
    RandomCrop(padding=2),
    RandomErasing(p=0.5),
]


# --- flips -------------------------------------------------------------------------------


@pytest.mark.parametrize(("horizontal", "vertical"), [(True, False), (False, True), (True, True)])
def test_flip_matches_torch_flip_on_flipped_samples(horizontal: bool, vertical: bool) -> None:
    x = images(b=64)
    op = RandomFlip(horizontal=horizontal, vertical=vertical, p=0.5)
    flips = op.sample(x, gen(1))
    out = op(x, gen(1))
    for axis, enabled in enumerate((horizontal, vertical)):
        assert flips[:, axis].any() == enabled  # some samples flipped, only on enabled axes
        assert not flips[:, axis].all()
    for b in range(64):
        dims = [d for d, on in ((3, flips[b, 0]), (2, flips[b, 1])) if on]
        expected = torch.flip(x[b : b + 1], dims) if dims else x[b : b + 1]
        assert torch.equal(out[b : b + 1], expected)


def test_flip_flips_about_half_of_a_big_batch() -> None:
    x = images(b=4000, c=1, h=3, w=4)
    out = RandomFlip(p=0.5)(x, gen(2))
    changed = (out != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.45 < changed < 0.55  # std of the mean is 0.008


def test_flip_p_one_and_zero() -> None:
    x = images()
    assert torch.equal(RandomFlip(p=1.0)(x, gen()), x.flip(3))
    assert torch.equal(RandomFlip(vertical=True, horizontal=False, p=0.0)(x, gen()), x)


# --- affine ------------------------------------------------------------------------------


def test_affine_grid_matches_torch_affine_grid() -> None:
    theta = torch.randn(5, 2, 3, generator=gen(3), dtype=torch.float64)
    ours = affine_grid(theta, (6, 11), torch.float32)
    expected = F.affine_grid(theta.float(), [5, 2, 6, 11], align_corners=False)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)


def test_affine_with_identity_parameters_returns_input() -> None:
    x = images(c=3, h=9, w=13)
    torch.testing.assert_close(RandomAffine()(x, gen()), x, atol=1e-6, rtol=0)


def test_integer_shift_equals_manual_zero_filled_shift() -> None:
    x = images(c=2, h=8, w=11)
    out = affine(x, tx=3, ty=-2)  # content moves 3 px right and 2 px up
    expected = torch.zeros_like(x)
    expected[:, :, : 8 - 2, 3:] = x[:, :, 2:, : 11 - 3]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_fill_value_enters_from_outside() -> None:
    x = images(c=1, h=6, w=6)
    out = affine(x, tx=-2, fill=0.25)
    torch.testing.assert_close(out[..., -2:], torch.full_like(out[..., -2:], 0.25))
    torch.testing.assert_close(out[..., :-2], x[..., 2:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize(("angle", "k"), [(90, 1), (-90, -1), (180, 2)])
def test_right_angle_rotation_equals_rot90(size: int, angle: float, k: int) -> None:
    x = images(c=3, h=size, w=size)
    expected = torch.rot90(x, k, dims=(2, 3))  # k > 0: counter-clockwise on screen
    torch.testing.assert_close(affine(x, angle=angle), expected, atol=1e-5, rtol=0)


def test_half_turn_of_a_non_square_image_is_exact() -> None:
    # a rotation built in normalised coordinates would be skewed on a 5x8 image
    x = images(c=1, h=5, w=8)
    torch.testing.assert_close(affine(x, angle=180), x.flip(2, 3), atol=1e-5, rtol=0)


def test_shift_applies_after_rotation() -> None:
    x = images(c=1, h=7, w=7)
    out = affine(x, angle=90, tx=2, ty=1)  # turn about the centre, then move right and down
    expected = torch.zeros_like(x)
    expected[..., 1:, 2:] = torch.rot90(x, 1, dims=(2, 3))[..., :-1, :-2]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_quarter_turn_of_a_non_square_image_keeps_pixels_square() -> None:
    x = images(b=2, c=1, h=5, w=9)
    out = affine(x, angle=90)  # centred pixel (dx, dy) reads from (dy, -dx) as rot90 does
    expected = torch.zeros_like(x)
    for row in range(5):
        for col in range(2, 7):  # the 5 columns the 5-pixel-high image turns into
            expected[:, :, row, col] = x[:, :, col - 2, 6 - row]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_shear_of_45_degrees_shifts_each_row_by_its_distance_from_the_centre() -> None:
    x = images(b=2, c=1, h=9, w=9)
    out = affine(x, shear=45)  # x_out = x_in + tan(45) * (row - 4)
    expected = torch.zeros_like(x)
    for row in range(9):
        shift = row - 4
        lo, hi = max(shift, 0), min(9 + shift, 9)
        expected[:, :, row, lo:hi] = x[:, :, row, lo - shift : hi - shift]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_affine_matches_pillow() -> None:
    # an independent oracle for every direction convention at once: Pillow's AFFINE wants
    # the inverse map in pixels (pixel centres at i + 0.5), here inverted by NumPy
    angle, shear, scale, tx, ty = 25.0, 12.0, 1.15, 2.5, -1.5
    image = torch.randint(0, 256, (28, 28), generator=gen(15), dtype=torch.uint8)
    image[:5], image[-5:], image[:, :5], image[:, -5:] = 0, 0, 0, 0  # no edge effects
    a, s = np.radians(angle), np.radians(shear)
    rotate = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # y points down
    forward = rotate @ np.array([[1, np.tan(s)], [0, 1]]) * scale
    inverse = np.linalg.inv(forward)
    centre = np.array([14.0, 14.0])
    offset = centre - inverse @ (centre + np.array([tx, ty]))
    coeffs = (*inverse[0], offset[0], *inverse[1], offset[1])
    pil = Image.fromarray(image.numpy()).transform(
        (28, 28), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
    )
    expected = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255)
    x = image.float()[None, None] / 255
    out = affine(x, angle=angle, tx=tx, ty=ty, scale=scale, shear=shear)[0, 0]
    torch.testing.assert_close(out, expected, atol=1.01 / 255, rtol=0)  # Pillow rounds to uint8


def test_zoom_above_one_makes_a_centred_square_bigger() -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 10:18] = 1.0  # 8x8 square about the centre
    out = affine(x, scale=1.5)
    area = (out > 0.5).sum().item()
    assert 1.8 * 64 < area < 2.7 * 64  # 1.5^2 = 2.25
    rows, cols = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    assert abs(rows.float().mean().item() - 13.5) < 0.5
    assert abs(cols.float().mean().item() - 13.5) < 0.5
    assert (affine(x, scale=0.5) > 0.5).sum().item() < 64


def test_sampled_parameters_stay_in_range() -> None:
    x = images(b=512, c=1, h=10, w=20)
    theta = RandomAffine(translate=(0.1, 0.2)).sample(x, gen(4))
    shift_px = theta[:, :, 2] * torch.tensor([20 / 2, 10 / 2], dtype=theta.dtype)
    assert shift_px[:, 0].abs().max() <= 2.0 + 1e-9 and shift_px[:, 0].abs().max() > 1.8
    assert shift_px[:, 1].abs().max() <= 2.0 + 1e-9
    theta = RandomAffine(scale=(0.8, 1.25)).sample(x, gen(5))
    zoom = 1 / theta[:, 0, 0]
    assert zoom.min() >= 0.8 - 1e-9 and zoom.max() <= 1.25 + 1e-9
    assert zoom.max() - zoom.min() > 0.4


# --- crop --------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_mode", ["constant", "reflect", "replicate"])
def test_crop_equals_slice_of_padded_batch(padding_mode: str) -> None:
    x = images(b=32, c=3, h=7, w=10)
    op = RandomCrop(padding=3, fill=0.5, padding_mode=padding_mode)
    offsets = op.sample(x, gen(6))
    out = op(x, gen(6))
    if padding_mode == "constant":
        padded = F.pad(x, (3, 3, 3, 3), mode="constant", value=0.5)
    else:
        padded = F.pad(x, (3, 3, 3, 3), mode=padding_mode)
    assert out.shape == x.shape
    for b, (oy, ox) in enumerate(offsets.tolist()):
        assert torch.equal(out[b], padded[b, :, oy : oy + 7, ox : ox + 10])


def test_crop_offsets_cover_the_whole_range() -> None:
    offsets = RandomCrop(padding=2).sample(images(b=500, c=1), gen(7))
    assert sorted(offsets.unique().tolist()) == [0, 1, 2, 3, 4]


def test_crop_without_padding_is_identity() -> None:
    x = images()
    assert torch.equal(RandomCrop(padding=0)(x, gen()), x)


def test_reflect_padding_larger_than_image_is_rejected() -> None:
    with pytest.raises(ShapeMismatchError, match="padding=7"):
        RandomCrop(padding=7, padding_mode="reflect")(images(h=7, w=10), gen())


# --- erasing -----------------------------------------------------------------------------


def test_erasing_writes_one_rectangle_of_value_with_area_in_scale() -> None:
    x = images(b=200, c=3, h=12, w=15)
    op = RandomErasing(p=0.5, scale=(0.05, 0.3), ratio=(0.5, 2.0), value=0.0)
    out = op(x, gen(8))
    changed = (out != x).any(dim=1)  # (B, H, W); x > 0.1, so erased pixels always change
    erased = 0
    for b in range(200):
        if not changed[b].any():
            assert torch.equal(out[b], x[b])
            continue
        erased += 1
        rows, cols = torch.nonzero(changed[b], as_tuple=True)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert changed[b].sum() == (y1 - y0) * (x1 - x0)  # a full rectangle
        assert (out[b, :, y0:y1, x0:x1] == 0).all()  # every channel
        assert 0.05 <= (y1 - y0) * (x1 - x0) / (12 * 15) <= 0.3
    assert 70 < erased < 130


def test_erasing_boxes_match_output() -> None:
    x = images(b=64, c=1, h=10, w=10)
    op = RandomErasing(p=1.0, value=0.5)
    boxes = op.sample(x, gen(9))
    out = op(x, gen(9))
    expected = x.clone()
    for b, (y0, x0, h, w) in enumerate(boxes.tolist()):
        assert h >= 1 and w >= 1
        expected[b, :, y0 : y0 + h, x0 : x0 + w] = 0.5
    assert torch.equal(out, expected)


def test_erasing_with_p_zero_is_identity() -> None:
    x = images()
    assert torch.equal(RandomErasing(p=0.0)(x, gen()), x)


# --- the pipeline: determinism, layout, batching -----------------------------------------


def test_same_seed_same_output_different_seed_different_output() -> None:
    x = images(b=16)
    aug = Augment(ALL_OPS)
    first = aug(x, gen(10))
    assert torch.equal(first, aug(x, gen(10)))
    assert not torch.equal(first, aug(x, gen(11)))
    g = gen(10)
    aug(x, g)
    assert not torch.equal(first, aug(x, g))  # the generator moves on


@pytest.mark.parametrize("op", [*ALL_OPS, Augment(ALL_OPS)], ids=repr)
@pytest.mark.parametrize("channels", [1, 3])
def test_memory_format_shape_and_dtype_are_kept(op: AugmentOp, channels: int) -> None:
    x = images(b=4, c=channels, h=9, w=14)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        out = op(xl, gen(12))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.is_contiguous(memory_format=layout)
        assert torch.equal(out, op(x, gen(12)))


class CountOps(TorchDispatchMode):
    """Counts the ATen operations dispatched inside the `with` block."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_no_python_loop_over_samples() -> None:
    aug = Augment(ALL_OPS)
    counts = []
    for batch in (2, 64):
        x = images(b=batch, c=1, h=28, w=28)
        with CountOps() as counter:
            aug(x, gen(13))
        counts.append(counter.count)
    assert counts[0] == counts[1]  # the number of tensor ops does not grow with the batch


def test_a_big_batch_is_fast() -> None:
    x = torch.rand(4096, 1, 28, 28, generator=gen(14))
    aug = Augment(ALL_OPS)
    best = float("inf")
    for seed in range(3):
        start = time.perf_counter()
        aug(x, gen(seed))
        best = min(best, time.perf_counter() - start)
    assert best < 1.0  # ~0.05 s on 2 cores; a per-sample loop takes seconds


# --- config parsing and validation -------------------------------------------------------


@pytest.mark.parametrize("spec", [None, "none", "None", "", [], ()])
def test_build_augment_nothing(spec: object) -> None:
    assert build_augment(spec) is None


def test_build_augment_from_string() -> None:
    aug = build_augment("flip, crop,vflip")
    assert aug is not None
    assert [type(op) for op in aug.ops] == [RandomFlip, RandomCrop, RandomFlip]
    assert aug.ops[2] == RandomFlip(horizontal=False, vertical=True)


def test_build_augment_from_list_of_names_and_dicts() -> None:
    spec = [
        "erase",
        {"name": "affine", "degrees": 5, "translate": [0.2, 0.1]},  # YAML gives lists
        {"name": "crop", "padding": 2, "padding_mode": "reflect"},
        "shift",
        "rotate",
        "zoom",
        "shear",
    ]
    aug = build_augment(spec)
    assert aug is not None
    assert aug.ops[0] == RandomErasing()
    assert aug.ops[1] == RandomAffine(5, (0.2, 0.1), (0.9, 1.1), 10)
    assert aug.ops[2] == RandomCrop(2, padding_mode="reflect")
    assert aug.ops[3:] == [
        RandomAffine(translate=(0.1, 0.1)),
        RandomAffine(degrees=10),
        RandomAffine(scale=(0.9, 1.1)),
        RandomAffine(shear=10),
    ]
    text = repr(aug)
    assert text.startswith("Augment([") and "RandomCrop(padding=2" in text


def test_build_augment_unknown_name() -> None:
    with pytest.raises(UnknownNameError, match=r"'blur'.*affine, altflip, crop, erase, flip"):
        build_augment("flip,blur")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([{"name": "crop", "pad": 2}], r"unknown argument\(s\) \['pad'\].*padding"),
        ([{"degrees": 2}], "with a 'name' key"),
        ([3], "received 3"),
        (7, "received 7"),
        ([{"name": "flip", "p": 1.5}], r"Expected p in \[0, 1\], received p=1.5"),
    ],
)
def test_build_augment_errors(spec: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_augment(spec)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RandomFlip(p=1.5), r"^Expected p in \[0, 1\], received p=1.5$"),
        (lambda: RandomFlip(horizontal=False), "received both False"),
        (lambda: RandomCrop(padding=-1), "received padding=-1"),
        (lambda: RandomCrop(padding=2.5), "received padding=2.5"),  # type: ignore[arg-type]
        (lambda: RandomCrop(padding_mode="wrap"), "received padding_mode='wrap'"),
        (lambda: RandomAffine(degrees=-5), "received degrees=-5"),
        (lambda: RandomAffine(translate=(0.1, 1.5)), r"received translate=\(0.1, 1.5\)"),
        (lambda: RandomAffine(scale=(1.2, 0.8)), r"min <= max.*received scale=\(1.2, 0.8\)"),
        (lambda: RandomAffine(shear=90), "received shear=90"),
        (lambda: RandomAffine(mode="area"), "received mode='area'"),
        (lambda: RandomErasing(p=-0.1), "received p=-0.1"),
        (lambda: RandomErasing(scale=(0.0, 0.5)), r"received scale=\(0.0, 0.5\)"),
        (lambda: RandomErasing(ratio=(2.0,)), r"received ratio=\(2.0,\)"),  # type: ignore[arg-type]
    ],
)
def test_constructors_reject_bad_values(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize("op", [*ALL_OPS, Augment(ALL_OPS)], ids=repr)
def test_ops_reject_bad_input(op: AugmentOp) -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(B, C, H, W\), received \(7, 10\)"):
        op(torch.rand(7, 10), gen())
    with pytest.raises(ConfigError, match=r"dtype=torch\.uint8"):
        op(torch.zeros(2, 1, 7, 10, dtype=torch.uint8), gen())
    with pytest.raises(ConfigError, match=r"torch\.Generator, received int"):
        op(images(), 0)  # type: ignore[arg-type]


def test_alternating_flip_mirrors_each_image_every_other_epoch() -> None:
    from cnnlab.data.augment import AlternatingFlip
    from cnnlab.data.loader import BatchLoader, Normalize

    n = 1000
    flips = AlternatingFlip.flips(torch.arange(n), 0)
    assert 0.45 < flips.float().mean() < 0.55  # about half the images start mirrored
    assert torch.equal(AlternatingFlip.flips(torch.arange(n), 1), ~flips)
    assert torch.equal(AlternatingFlip.flips(torch.arange(n), 2), flips)
    # Image i: a bright pixel in the left column, and its index in the pixel values.
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = 255
    labels = torch.arange(n)
    loader = BatchLoader(
        images, labels, 64, Normalize([0.0], [1.0]), shuffle=True,
        augment=build_augment("altflip"), generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    seen: dict[int, list[bool]] = {i: [] for i in range(n)}
    for epoch in range(2):
        loader.epoch = epoch
        for x, y in loader:
            mirrored = x[:, 0, 0, 3] > 0.5
            for i, m in zip(y.tolist(), mirrored.tolist(), strict=True):
                seen[i].append(m)
    assert all(sorted(both) == [False, True] for both in seen.values())


def test_alternating_flip_without_indices_is_a_random_flip() -> None:
    from cnnlab.data.augment import AlternatingFlip

    x = torch.rand(64, 1, 5, 5)
    out = AlternatingFlip()(x, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)]
    unchanged = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert 10 < sum(mirrored) < 54
