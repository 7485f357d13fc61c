"""Heatmap keypoints with a soft-argmax (Sun et al. 2018): the coordinate convention,
the soft-argmax against NumPy, and the model's contract and learning."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab import create_model, list_models
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.models import Classifier, model_info
from cnnlab.models.integral_regression import pixel_centres, soft_argmax


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small convs on a busy 2-core machine train faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_pixel_centres_span_the_image_edges() -> None:
    # Pixel j spans [j, j + 1) of W: x = 2 * (j + 0.5) / W - 1, so the edges are -1 and +1.
    assert pixel_centres(4).tolist() == [-0.75, -0.25, 0.25, 0.75]
    centres = pixel_centres(96, dtype=torch.float64)
    kaggle = (np.arange(96) + 0.5 - 48) / 48  # Nouri's (p - 48) / 48, p from the left edge
    assert np.allclose(centres.numpy(), kaggle)


def test_soft_argmax_matches_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    heatmaps = 3 * torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    h = heatmaps.numpy()
    expected = np.zeros((2, 3, 2))
    for b, p in np.ndindex(2, 3):
        e = np.exp(h[b, p] - h[b, p].max())
        prob = e / e.sum()
        rows, cols = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
        expected[b, p] = [
            (prob * ((2 * cols + 1) / 7 - 1)).sum(),  # x: column centres
            (prob * ((2 * rows + 1) / 5 - 1)).sum(),  # y: row centres
        ]
    assert np.allclose(soft_argmax(heatmaps).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize(("row", "col"), [(0, 0), (2, 5), (4, 6), (3, 0)])
def test_one_hot_heatmap_gives_that_pixel_centre_exactly(row: int, col: int) -> None:
    heatmaps = torch.full((1, 1, 5, 7), -torch.inf, dtype=torch.float64)
    heatmaps[0, 0, row, col] = 0.0  # after the softmax: exactly one-hot
    x, y = soft_argmax(heatmaps)[0, 0].tolist()
    assert x == (2 * col + 1) / 7 - 1  # the same float64 operations: no rounding slack
    assert y == (2 * row + 1) / 5 - 1
    assert torch.allclose(soft_argmax(heatmaps.float())[0, 0], torch.tensor([x, y]))


def test_soft_argmax_gradient_matches_finite_differences() -> None:
    heatmaps = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(soft_argmax, (heatmaps,))


def test_registered_as_a_keypoints_model() -> None:
    info = model_info("keypoints_heatmap")
    assert info.task == "keypoints" and info.input_shape == (1, 96, 96)
    assert "keypoints_heatmap" in list_models(task="keypoints")


def test_shapes_heatmaps_and_output_convention() -> None:
    torch.manual_seed(0)
    model = create_model("keypoints_heatmap").eval()  # 30 outputs: 15 facial keypoints
    assert isinstance(model, Classifier) and model.num_classes == 30
    x = torch.randn(2, 1, 96, 96)
    out = model(x)
    assert out.shape == (2, 30) and out.abs().max() < 1
    heatmaps = model.forward_heatmaps(x)
    assert heatmaps.shape == (2, 15, 24, 24)  # 1/4 of 96
    # x1, y1, x2, y2, ...: the soft-argmax of each heatmap in turn.
    assert torch.allclose(out.view(2, 15, 2), soft_argmax(heatmaps))
    assert torch.equal(model.forward_head(model.forward_features(x)), out)
    assert model(torch.randn(3, 1, 32, 48)).shape == (3, 30)
    model.reset_classifier(4)
    assert model(x).shape == (2, 4)


def test_parameter_count_by_hand() -> None:
    model = create_model("keypoints_heatmap")
    # 3x3 convs without bias, each followed by BN (scale + shift); a 1x1 conv to 15 maps.
    convs = [(1, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 64)]
    by_hand = sum(9 * a * b + 2 * b for a, b in convs) + 64 * 15 + 15
    assert n_params(model) == by_hand == 107_647


def test_bad_sizes_and_odd_outputs_are_refused() -> None:
    model = create_model("keypoints_heatmap")
    with pytest.raises(ShapeMismatchError, match=r"multiples of 4 .*\(1, 1, 30, 32\)"):
        model(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ConfigError, match=r"even num_classes.*num_classes=7"):
        create_model("keypoints_heatmap", num_classes=7)
    with pytest.raises(ConfigError, match="num_classes=3"):
        model.reset_classifier(3)
    assert model.num_classes == 30  # unchanged by the refused reset


def blobs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright and a dark 4x4 square per image; targets: their centres, x then y, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 1, size, size, generator=g)
    corners = torch.randint(0, size - 4, (n, 2, 2), generator=g)  # (image, point, (col, row))
    for i in range(n):  # test data only
        for p, value in enumerate((1.0, -1.0)):
            c, r = corners[i, p].tolist()
            x[i, 0, r : r + 4, c : c + 4] = value
    centres = corners.float() + 2.0  # in pixels from the top-left corner of the image
    return x, (2 * centres / size - 1).reshape(n, 4)


def test_a_few_dozen_steps_learn_to_locate_squares() -> None:
    x, target = blobs(16, 32, seed=0)
    torch.manual_seed(0)
    model = create_model("keypoints_heatmap", num_classes=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = nn.functional.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Measured: from an error of ~8 pixels to well under one.
    assert losses[-1] < 0.01 * losses[0]
    assert losses[-1] ** 0.5 * 16 < 1.0  # RMS error in pixels (16 pixels per unit at 32 px)
