"""Image grids, PNG files, filter grids and feature maps, against NumPy/PyTorch oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.visualize import (
    MAX_TILES,
    feature_map_grid,
    feature_maps,
    filter_grid,
    image_grid,
    save_png,
)
from cnnlab.models import create_model


@pytest.mark.parametrize(
    ("n", "ncols", "rows", "cols"), [(1, None, 1, 1), (5, None, 2, 3), (7, 2, 4, 2), (6, 6, 1, 6)]
)
def test_image_grid_shape(n: int, ncols: int | None, rows: int, cols: int) -> None:
    grid = image_grid(torch.rand(n, 1, 4, 5), ncols=ncols, pad=1)
    assert grid.shape == (rows * 5 - 1, cols * 6 - 1)
    assert grid.dtype == np.uint8
    assert image_grid(torch.rand(n, 3, 4, 5), ncols=ncols).shape == (rows * 5 - 1, cols * 6 - 1, 3)


def test_image_grid_each_scales_every_tile_to_full_range() -> None:
    x = torch.stack([torch.linspace(-3, -1, 9), torch.linspace(10, 50, 9)]).reshape(2, 1, 3, 3)
    grid = image_grid(x, ncols=2, pad=1, normalize="each")
    for tile in (grid[:, :3], grid[:, 4:]):
        assert tile.min() == 0 and tile.max() == 255
    expected = np.round(np.linspace(0, 255, 9)).reshape(3, 3)
    np.testing.assert_array_equal(grid[:, :3], expected)
    # "all" keeps the first tile dark: its values are far below the second tile's.
    assert image_grid(x, ncols=2, normalize="all")[:, :3].max() < 20


def test_image_grid_rejects_bad_input() -> None:
    with pytest.raises(ShapeMismatchError, match=r"received \(2, 2, 3, 3\)"):
        image_grid(torch.rand(2, 2, 3, 3))
    with pytest.raises(ConfigError, match="normalize"):
        image_grid(torch.rand(2, 1, 3, 3), normalize="max")  # type: ignore[arg-type]


def test_save_png_round_trip_and_no_temp_file(tmp_path: Path) -> None:
    folder = tmp_path
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    path = save_png(rgb, folder / "grid.png", scale=3)
    back = np.asarray(Image.open(path))
    np.testing.assert_array_equal(back, rgb.repeat(3, axis=0).repeat(3, axis=1))
    grey = rgb[..., 0]
    np.testing.assert_array_equal(np.asarray(Image.open(save_png(grey, folder / "g.png"))), grey)
    assert sorted(p.name for p in folder.iterdir()) == ["g.png", "grid.png"]


def _rescaled(w: torch.Tensor) -> np.ndarray:
    """Oracle: one tile scaled to 0..255 as NumPy would do it."""
    a = w.detach().double().numpy()
    return np.round((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)


def test_filter_grid_first_conv_is_rgb() -> None:
    model = create_model("keras_cifar")
    grid = filter_grid(model)  # 32 filters of 3x3x3 -> a 6x6 grid of tiles (32 used)
    assert grid.shape == (6 * 4 - 1, 6 * 4 - 1, 3)
    w = model.features[0].weight  # (32, 3, 3, 3)
    np.testing.assert_array_equal(grid[:3, :3], _rescaled(w[0]).transpose(1, 2, 0))
    np.testing.assert_array_equal(grid[4:7, 8:11], _rescaled(w[8]).transpose(1, 2, 0))
    assert (grid[-3:, -3:] == 0).all()  # tiles 33..36 are empty


def test_filter_grid_deeper_layer_modes() -> None:
    model = create_model("keras_cifar")
    w = model.features[2].weight  # (32, 32, 3, 3)
    summed = filter_grid(model, "features.2", mode="sum")
    assert summed.shape == (6 * 4 - 1, 6 * 4 - 1)  # 32 tiles
    np.testing.assert_array_equal(summed[:3, 4:7], _rescaled(w[1].sum(0)))
    per = filter_grid(model, "features.2", mode="per_channel")  # 1024 pairs capped
    assert per.shape == (16 * 4 - 1, 16 * 4 - 1) and MAX_TILES == 256
    np.testing.assert_array_equal(per[:3, 4:7], _rescaled(w[0, 1]))  # (out 0, in 1)
    assert filter_grid(model, "features.2").shape == summed.shape  # auto -> sum
    with pytest.raises(ShapeMismatchError, match="in_channels=32"):
        filter_grid(model, "features.2", mode="rgb")
    with pytest.raises(ConfigError, match="Conv2d"):
        filter_grid(model, "features.1")


def test_feature_maps_match_sequential_prefix_and_remove_hooks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 5, 3), nn.ReLU())
    model.train()
    x = torch.randn(2, 3, 10, 10)
    maps = feature_maps(model, x, ["0", "2"])
    with torch.no_grad():
        torch.testing.assert_close(maps["0"], model[0](x))  # before the in-place ReLU
        torch.testing.assert_close(maps["2"], model[:3](x))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    one = feature_maps(model, x[0], "2")["2"]
    assert one.shape == (1, 5, 6, 6)
    grid = feature_map_grid(one)
    assert grid.shape == (2 * 7 - 1, 3 * 7 - 1)  # 5 channels of 6x6 -> 2 rows of 3
    np.testing.assert_array_equal(grid[:6, 7:13], _rescaled(one[0, 1]))
    with pytest.raises(ConfigError, match="nope"):
        feature_maps(model, x, "nope")
