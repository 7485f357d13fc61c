"""Patch whitening of the first conv: a NumPy oracle for the filters, and the trainer option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import create_model
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import Trainer
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.whiten import whiten_first_conv, whitening_filters
from cnnlab.runs.run import build_model


def correlated_images(n: int = 64, channels: int = 1, size: int = 10) -> torch.Tensor:
    """Noise blurred by a fixed kernel: neighbouring pixels correlate, as in photos."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(n, channels, size + 2, size + 2, generator=g, dtype=torch.float64)
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64) / 16
    kernel = blur.expand(channels, 1, 3, 3)
    return F.conv2d(noise, kernel, groups=channels) + 0.3 * torch.randn(
        n, channels, size, size, generator=g, dtype=torch.float64
    )


def numpy_patches(images: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Every kh x kw patch (no padding, stride 1) as a row, channel-major like the weight."""
    n, _, h, w = images.shape
    rows = [
        images[i, :, y : y + kh, x : x + kw].reshape(-1)
        for i in range(n)
        for y in range(h - kh + 1)
        for x in range(w - kw + 1)
    ]
    return np.stack(rows)


@pytest.mark.parametrize(("channels", "kernel"), [(1, (3, 3)), (2, (2, 3))])
def test_filter_responses_are_decorrelated_with_unit_variance(
    channels: int, kernel: tuple[int, int]
) -> None:
    images = correlated_images(channels=channels)
    eps = 1e-4
    filters = whitening_filters(images.float(), kernel, eps=eps).double()
    patches = numpy_patches(images.numpy(), *kernel)
    eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))[::-1]
    responses = F.conv2d(images, filters)  # (N, d, H', W'): one response per filter
    flat = responses.permute(1, 0, 2, 3).reshape(len(filters), -1).numpy()
    covariance = flat @ flat.T / flat.shape[1]
    np.testing.assert_allclose(covariance, np.diag(eigenvalues / (eigenvalues + eps)), atol=1e-5)
    assert filters.shape == (channels * kernel[0] * kernel[1], channels, *kernel)


def test_filters_come_in_order_of_decreasing_patch_variance() -> None:
    images = correlated_images()
    filters = whitening_filters(images.float(), (3, 3)).double().reshape(9, -1).numpy()
    patches = numpy_patches(images.numpy(), 3, 3)
    _, vectors = np.linalg.eigh(patches.T @ patches / len(patches))
    top = vectors[:, -1]  # numpy: ascending order, so the last is the largest
    cosine = filters[0] @ top / np.linalg.norm(filters[0])
    assert abs(cosine) == pytest.approx(1.0, abs=1e-5)


def test_first_conv_gets_plus_and_minus_filters_and_is_frozen() -> None:
    torch.manual_seed(0)
    model = create_model("resnet_mini", widths=[24, 16], blocks=[1, 1])
    before = model.features[0].weight.detach().clone()
    images = correlated_images(size=12).float()
    assert whiten_first_conv(model, images) == "features.0"
    weight = model.features[0].weight
    expected = whitening_filters(images, (3, 3))
    torch.testing.assert_close(weight[:9], expected)
    torch.testing.assert_close(weight[9:18], -expected)
    torch.testing.assert_close(weight[18:], before[18:])  # the rest keep their init
    assert not weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "features.0.weight")


def test_a_narrow_first_conv_takes_the_largest_variance_directions() -> None:
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU())
    images = correlated_images().float()
    whiten_first_conv(model, images)
    expected = whitening_filters(images, (3, 3))[:3]
    torch.testing.assert_close(model[0].weight[:3], expected)
    torch.testing.assert_close(model[0].weight[3:], -expected)


def test_bad_models_and_images_are_refused_with_what_was_received() -> None:
    images = correlated_images().float()
    with pytest.raises(ConfigError, match="Sequential has none"):
        whiten_first_conv(nn.Sequential(nn.Flatten(), nn.Linear(100, 2)), images)
    with pytest.raises(ConfigError, match="groups=2"):
        whiten_first_conv(nn.Conv2d(2, 4, 3, groups=2), torch.randn(4, 2, 8, 8))
    with pytest.raises(ConfigError, match="takes 3 channels, received images with 1"):
        whiten_first_conv(nn.Conv2d(3, 8, 3), images)
    with pytest.raises(ConfigError, match="at least 3x3 pixels"):
        whitening_filters(torch.randn(2, 1, 2, 2), (3, 3))
    with pytest.raises(ConfigError, match="whiten to be true or false, received whiten='yes'"):
        TrainConfig(whiten="yes")  # type: ignore[arg-type]


def test_trainer_whitens_from_the_normalised_training_images_and_keeps_them(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    config = TrainConfig(**{**quick_config.to_dict(), "whiten": True})
    torch.manual_seed(0)
    lines: list[str] = []
    trainer = Trainer(build_model(config, bars), config, log=lines.append)
    trainer.fit(bars)
    assert "whitened and froze features.0" in lines
    mean, std = bars.channel_stats()
    x = (bars.x_train.float() / 255 - mean[0]) / std[0]
    expected = whitening_filters(x, (3, 3))
    weight = trainer.model.features[0].weight  # type: ignore[index]
    torch.testing.assert_close(weight[:4], expected[:4])  # 8 filters: the top 4 directions
    torch.testing.assert_close(weight[4:8], -expected[:4])
    assert trainer.evaluate(bars.x_test, bars.y_test)["accuracy"] > 0.9
