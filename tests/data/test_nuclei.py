"""stardist's nuclei image as a dataset: the quadrant split and Otsu's threshold."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.core.errors import DatasetUnavailableError
from cnnlab.data.nuclei import QUADRANT, TILE, otsu_threshold, read_nuclei, split_quadrants, tiles


def _stardist() -> tuple[np.ndarray, np.ndarray]:
    try:
        return read_nuclei()
    except DatasetUnavailableError as e:
        pytest.skip(str(e))


def test_the_image_has_its_published_125_nuclei_and_the_split_holds_out_a_quadrant() -> None:
    image, labels = _stardist()
    assert image.shape == labels.shape == (512, 512)
    assert len(np.unique(labels)) - 1 == 125
    train, test = split_quadrants(image)
    assert np.array_equal(test, image[QUADRANT:, QUADRANT:])
    pieces = tiles(test, TILE)  # non-overlapping test tiles cover the quadrant once
    assert pieces.shape == (16, TILE, TILE)
    assert pieces.sum() == test.sum()
    q = QUADRANT
    for quadrant, (rows, cols) in zip(train, [(0, 0), (0, q), (q, 0)], strict=True):
        assert np.array_equal(quadrant, image[rows : rows + q, cols : cols + q])


def test_loader_gives_binary_masks_from_three_quadrants() -> None:
    _stardist()
    from cnnlab import data

    ds = data.load("nuclei")
    assert ds.task == "segment" and ds.mask_classes == ["background", "nucleus"]
    assert tuple(ds.x_train.shape) == (3 * 13 * 13, 1, 64, 64) and len(ds.x_test) == 16
    assert set(np.unique(ds.targets_train["mask"].numpy())) == {0, 1}


def _otsu_brute_force(image: np.ndarray) -> int:
    best, best_t = -1.0, 0
    values = image.ravel().astype(np.float64)
    for t in range(256):
        low, high = values[values <= t], values[values > t]
        if not len(low) or not len(high):
            continue
        between = len(low) * len(high) * (low.mean() - high.mean()) ** 2
        if between > best:
            best, best_t = between, t
    return best_t


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_threshold_matches_a_brute_force_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dark = rng.normal(60, 15, 3000)
    bright = rng.normal(170, 25, 1000 * (seed + 1))
    image = np.clip(np.concatenate([dark, bright]), 0, 255).astype(np.uint8).reshape(-1, 100)
    assert otsu_threshold(image) == _otsu_brute_force(image)


def test_instance_boxes_bound_each_nucleus_and_skip_slivers() -> None:
    from cnnlab.data.nuclei import TILE, instance_boxes

    tile = np.zeros((TILE, TILE), dtype=np.int64)
    tile[2:5, 10:20] = 7  # rows 2-4, columns 10-19
    tile[30:40, 0:2] = 3  # a 2-pixel-wide sliver at the edge: no box
    tile[50:60, 40:45] = 9
    empty = np.zeros_like(tile)
    boxes, classes = instance_boxes(np.stack([tile, empty]))
    assert boxes.shape == (2, 2, 4)
    assert boxes[0].tolist() == [[10.0, 2.0, 20.0, 5.0], [40.0, 50.0, 45.0, 60.0]]
    assert classes.tolist() == [[0, 0], [-1, -1]]
