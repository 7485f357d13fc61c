"""Composed scenes: masks, labels and boxes checked against the pixels they describe."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.core.errors import ConfigError, DataFormatError, DatasetUnavailableError
from cnnlab.data.scenes import Scenes, compose_scenes, load_scenes, save_scenes

K = 5  # classes of the synthetic items


def rectangles(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Items (n, 28, 28): one filled rectangle each, 6 to 24 px a side, value 100 to 255."""
    rng = np.random.default_rng(seed)
    items = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        h, w = rng.integers(6, 25, size=2)
        y, x = rng.integers(0, 29 - h), rng.integers(0, 29 - w)
        items[i, y : y + h, x : x + w] = rng.integers(100, 256)
    return torch.from_numpy(items), torch.arange(n) % K


@pytest.fixture(scope="module")
def items() -> tuple[torch.Tensor, torch.Tensor]:
    return rectangles(40)


@pytest.fixture(scope="module")
def scenes(items: tuple[torch.Tensor, torch.Tensor]) -> Scenes:
    return compose_scenes(*items, K, 400, seed=3)


def bounds(pixels: np.ndarray) -> list[int]:
    """xyxy tight bounds of the True pixels, ends exclusive: the oracle for boxes."""
    ys, xs = np.nonzero(pixels)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def covered(box: np.ndarray, others: list[np.ndarray], canvas: int) -> int:
    """Pixels of ``box`` inside the union of ``others`` (xyxy boxes)."""
    grid = np.zeros((canvas, canvas), bool)
    for x0, y0, x1, y1 in np.asarray(others, np.int64).reshape(-1, 4):
        grid[y0:y1, x0:x1] = True
    x0, y0, x1, y1 = box.astype(np.int64)
    return int(grid[y0:y1, x0:x1].sum())


# -- shapes and determinism ---------------------------------------------------------------


@pytest.mark.parametrize("canvas", [64, 96])
def test_shapes_and_dtypes(items: tuple[torch.Tensor, torch.Tensor], canvas: int) -> None:
    sc = compose_scenes(*items, K, 30, canvas=canvas)
    assert len(sc) == 30 and sc.num_classes == K
    assert sc.images.shape == (30, 1, canvas, canvas) and sc.images.dtype == torch.uint8
    assert sc.masks.shape == (30, canvas, canvas) and sc.masks.dtype == torch.uint8
    assert sc.labels.shape == (30, K) and sc.labels.dtype == torch.float32
    assert len(sc.boxes) == len(sc.classes) == 30
    for b, c in zip(sc.boxes, sc.classes, strict=True):
        assert b.dtype == torch.float32 and b.shape == (len(c), 4)
        assert c.dtype == torch.int64 and 1 <= len(c) <= 4


def test_same_seed_same_scenes_other_seed_other_scenes(
    items: tuple[torch.Tensor, torch.Tensor], scenes: Scenes
) -> None:
    again = compose_scenes(*items, K, 400, seed=3)
    assert torch.equal(again.images, scenes.images)
    assert torch.equal(again.masks, scenes.masks)
    assert torch.equal(again.labels, scenes.labels)
    for a, b in zip(again.boxes + again.classes, scenes.boxes + scenes.classes, strict=True):
        assert torch.equal(a, b)
    other = compose_scenes(*items, K, 400, seed=4)
    assert not torch.equal(other.images, scenes.images)


def test_accepts_items_with_a_channel_axis(items: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = items
    with_channel = compose_scenes(x[:, None], y, K, 20, seed=1)
    assert torch.equal(with_channel.images, compose_scenes(x, y, K, 20, seed=1).images)


# -- targets agree with the pixels ----------------------------------------------------------


def test_mask_is_set_exactly_where_the_image_reaches_the_threshold(scenes: Scenes) -> None:
    images, masks = scenes.images[:, 0].numpy(), scenes.masks.numpy()
    np.testing.assert_array_equal(masks != 0, images >= 32)
    assert masks.max() <= K  # class + 1


def test_labels_classes_and_mask_name_the_same_classes(scenes: Scenes) -> None:
    for i in range(len(scenes)):
        in_mask = set(np.unique(scenes.masks[i].numpy()).tolist()) - {0}
        in_labels = set(torch.nonzero(scenes.labels[i]).flatten().tolist())
        assert {c + 1 for c in in_labels} == in_mask
        assert set(scenes.classes[i].tolist()) == in_labels


def test_boxes_of_each_class_bound_exactly_its_mask_pixels(scenes: Scenes) -> None:
    for i in range(len(scenes)):
        mask, boxes, classes = (t[i].numpy() for t in (scenes.masks, scenes.boxes, scenes.classes))
        for c in set(classes.tolist()):
            mine = boxes[classes == c]
            union = [*mine[:, :2].min(0).tolist(), *mine[:, 2:].max(0).tolist()]
            assert union == bounds(mask == c + 1), f"scene {i}, class {c}"


def test_single_item_box_is_the_tight_bound_of_the_bright_pixels(
    items: tuple[torch.Tensor, torch.Tensor],
) -> None:
    sc = compose_scenes(*items, K, 100, max_items=1, seed=5)
    for i in range(len(sc)):
        image = sc.images[i, 0].numpy()
        assert sc.boxes[i].tolist() == [bounds(image >= 32)]
        assert sc.classes[i].tolist() == [int(sc.masks[i].max()) - 1]


def test_item_size_follows_the_scale(items: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = items
    sides = torch.tensor([bounds(im.numpy() >= 32)[2] - bounds(im.numpy() >= 32)[0] for im in x])
    for factor in (0.8, 1.5):
        sc = compose_scenes(x, y, K, 60, max_items=1, scale=(factor, factor), seed=2)
        got = torch.stack([b[0, 2] - b[0, 0] for b in sc.boxes])
        # Which item each scene drew is unknown, but its width is one of the items' widths, scaled.
        scaled = sides.float() * factor
        assert all((scaled - w).abs().min() <= 2 for w in got), f"scale {factor}"


# -- placement ------------------------------------------------------------------------------


def test_no_overlap_allowed_gives_disjoint_boxes(items: tuple[torch.Tensor, torch.Tensor]) -> None:
    sc = compose_scenes(*items, K, 200, max_overlap=0.0, min_items=3, max_items=4, seed=6)
    assert sum(len(b) for b in sc.boxes) > 2 * len(sc)  # several items per scene survived
    for i, b in enumerate(sc.boxes):
        for j in range(len(b)):
            others = [b[k].numpy() for k in range(len(b)) if k != j]
            assert covered(b[j].numpy(), others, 64) == 0, f"scene {i}"


def test_last_item_overlaps_earlier_ones_by_at_most_max_overlap(
    items: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # The last item pasted wins its pixels, so its visible box is the box it was placed
    # with; the earlier visible boxes lie inside their placed boxes.
    fractions = {}
    for limit in (0.2, 1.0):
        sc = compose_scenes(*items, K, 300, max_overlap=limit, min_items=4, seed=7)
        worst = 0.0
        for b in sc.boxes:
            last = b[-1].numpy()
            area = (last[2] - last[0]) * (last[3] - last[1])
            worst = max(worst, covered(last, list(b[:-1].numpy()), 64) / area)
        fractions[limit] = worst
    assert 0.0 < fractions[0.2] <= 0.2
    assert fractions[1.0] > 0.2  # the rule is what kept the first run under 0.2


def test_later_item_wins_the_mask_and_a_covered_item_is_dropped() -> None:
    # A dim 10x10 square (class 0) and a bright full square (class 1), both pasted at
    # (0, 0) of a 28x28 canvas: the small one shows only when it is pasted last.
    x = torch.zeros(2, 28, 28, dtype=torch.uint8)
    x[0, 9:19, 9:19] = 100
    x[1] = 200
    sc = compose_scenes(x, torch.tensor([0, 1]), 2, 60, canvas=28, scale=(1.0, 1.0),
                        min_items=2, max_items=2, max_overlap=1.0)  # fmt: skip
    seen = {tuple(c.tolist()) for c in sc.classes}
    assert seen == {(0,), (1,), (1, 0)}  # (0, 1) would mean the earlier item kept its pixels
    for i in range(len(sc)):
        if sc.classes[i].tolist() == [1, 0]:
            assert sc.boxes[i].tolist() == [[0, 0, 28, 28], [9, 9, 19, 19]]
            assert (sc.masks[i, 9:19, 9:19] == 1).all() and int(sc.masks[i].sum()) == 2 * 684 + 100
            assert (sc.images[i] == 200).all()  # pixels are the max, whoever is on top
        elif sc.classes[i].tolist() == [1]:
            assert (sc.masks[i] == 2).all()


def test_item_that_vanishes_when_shrunk_is_pasted_unscaled() -> None:
    dot = torch.zeros(1, 28, 28, dtype=torch.uint8)
    dot[0, 14, 14] = 255  # shrunk to 22 px, its peak falls to about 116
    sc = compose_scenes(dot, torch.tensor([2]), 3, 5, scale=(0.8, 0.8), threshold=200)
    for i in range(len(sc)):
        x0, y0, x1, y1 = (int(v) for v in sc.boxes[i][0])
        assert (x1 - x0, y1 - y0) == (1, 1) and sc.classes[i].tolist() == [2]
        assert int(sc.images[i, 0, y0, x0]) == 255


# -- save and load --------------------------------------------------------------------------


def test_save_load_round_trip(scenes: Scenes, tmp_path: Path) -> None:
    path = tmp_path / "scenes.npz"
    save_scenes(path, scenes)
    assert [p.name for p in tmp_path.iterdir()] == ["scenes.npz"]  # no temp file left
    back = load_scenes(path)
    assert torch.equal(back.images, scenes.images) and torch.equal(back.masks, scenes.masks)
    assert torch.equal(back.labels, scenes.labels)
    for a, b in zip(back.boxes + back.classes, scenes.boxes + scenes.classes, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_truncated_file_names_the_file(scenes: Scenes, tmp_path: Path) -> None:
    path = tmp_path / "scenes.npz"
    save_scenes(path, scenes)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataFormatError, match=r"not a readable \.npz") as caught:
        load_scenes(path)
    assert str(path) in str(caught.value)


def test_foreign_npz_names_the_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8), masks=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataFormatError) as caught:
        load_scenes(path)
    message = str(caught.value)
    assert str(path) in message
    assert "missing images, labels, boxes, classes, offsets" in message
    assert "x_train(2, 28, 28)" in message


@pytest.mark.parametrize(
    ("key", "bad", "expected"),
    [
        ("labels", lambda a: a.astype(np.float64), "labels should be float32"),
        ("masks", lambda a: a[:, :10], "masks should be uint8 shaped"),
        ("offsets", lambda a: a[::-1].copy(), "offsets should rise from 0"),
        ("classes", lambda a: a + 10, "classes should lie in [0, 5)"),
    ],
)
def test_inconsistent_arrays_are_refused(
    scenes: Scenes,
    tmp_path: Path,
    key: str,
    bad: Callable[[np.ndarray], np.ndarray],
    expected: str,
) -> None:
    path = tmp_path / "scenes.npz"
    save_scenes(path, scenes)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = bad(arrays[key])
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match=re.escape(expected)):
        load_scenes(path)


# -- bad arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_items": 1, "min_items": 2}, "min_items=2, max_items=1"),
        ({"min_items": 0}, "min_items=0"),
        ({"canvas": 40}, "canvas=40 is smaller than the largest item it must hold, 45"),
        ({"count": 0}, "count >= 1, received count=0"),
        ({"num_classes": 3}, r"item_labels must lie in \[0, 3\).*received values in \[0, 4\]"),
        ({"scale": (1.2, 0.9)}, r"0 < low <= high, received scale=\(1.2, 0.9\)"),
        ({"max_overlap": 1.5}, "max_overlap <= 1, received max_overlap=1.5"),
        ({"threshold": 0}, "threshold <= 255, received threshold=0"),
        ({"threshold": 255}, "no item has a pixel >= threshold=255"),
    ],
)
def test_bad_arguments(
    items: tuple[torch.Tensor, torch.Tensor], change: dict[str, object], expected: str
) -> None:
    x, y = items
    args: dict[str, object] = {"num_classes": K, "count": 5} | change
    if change.get("threshold") == 255:
        x = x.clamp(max=200)
    with pytest.raises(ConfigError, match=expected):
        compose_scenes(x, y, **args)


def test_bad_items_and_labels(items: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = items
    with pytest.raises(ConfigError, match=r"uint8 tensor \(N, H, W\).*dtype=torch.float32"):
        compose_scenes(x.float(), y, K, 5)
    with pytest.raises(ConfigError, match=r"item_labels shaped \(40,\).*shape=\(39,\)"):
        compose_scenes(x, y[:39], K, 5)
    with pytest.raises(ConfigError, match=r"values in \[-1, 4\]"):
        compose_scenes(x, torch.cat([y[:-1], torch.tensor([-1])]), K, 5)


# -- real items -----------------------------------------------------------------------------


def test_fashion_mnist_scenes() -> None:
    try:
        ds = data.load("fashion-mnist", download=False)
    except DatasetUnavailableError as error:
        pytest.skip(f"Fashion-MNIST is not available locally: {error}")
    start = time.perf_counter()
    sc = compose_scenes(ds.x_train, ds.y_train, 10, 6000, seed=0)
    seconds = time.perf_counter() - start
    assert seconds < 20, f"6000 scenes took {seconds:.1f} s; expected about 1.5 s"
    np.testing.assert_array_equal(sc.masks.numpy() != 0, sc.images[:, 0].numpy() >= 32)
    counts = torch.tensor([len(c) for c in sc.classes])
    assert counts.min() >= 1 and counts.max() <= 4
    assert 1.5 < counts.float().mean() < 3.0  # a few items per scene, not one or four
    assert sc.labels.sum(0).min() > 500  # every class appears in many scenes
