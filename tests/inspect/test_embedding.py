"""Embeddings: pooled features by hand, PCA against scikit-learn, t-SNE by silhouette."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from cnnlab import create_model
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.embedding import PALETTE, penultimate_features, project, scatter_png


@pytest.mark.parametrize("training", [True, False])
def test_penultimate_features_by_hand(training: bool) -> None:
    torch.manual_seed(0)
    model = create_model("resnet_mini", widths=[8, 16], blocks=[1, 1])
    model.train(training)
    x = torch.randn(5, model.in_channels, 16, 16)
    feats = penultimate_features(model, x, batch_size=2)  # 3 batches, the last one short
    assert feats.shape == (5, 16)
    assert model.training is training
    model.eval()
    with torch.no_grad():
        expected = model.forward_features(x).mean(dim=(2, 3))
    torch.testing.assert_close(feats, expected)


def test_project_pca_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    # Two dominant directions (scales 10 and 5) in 6-D plus small noise.
    basis = np.linalg.qr(rng.normal(size=(6, 6)))[0][:, :2]
    x = rng.normal(size=(100, 2)) * [10.0, 5.0] @ basis.T + 0.1 * rng.normal(size=(100, 6))
    points = project(x, "pca")
    expected = PCA(n_components=2).fit_transform(x)
    assert points.shape == (100, 2)
    for j in range(2):  # each component is defined up to sign
        sign = np.sign(points[:, j] @ expected[:, j])
        np.testing.assert_allclose(sign * points[:, j], expected[:, j], atol=1e-8)


def test_project_tsne_separates_blobs() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 10)) * 10
    labels = np.repeat(np.arange(3), 20)
    x = centres[labels] + rng.normal(size=(60, 10))
    points = project(torch.from_numpy(x), "tsne", seed=0)
    assert points.shape == (60, 2)
    assert silhouette_score(points, labels) > 0.5


def test_project_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="'umap'"):
        project(np.zeros((5, 3)), "umap")  # type: ignore[arg-type]
    with pytest.raises(ShapeMismatchError):
        project(np.zeros(5))


def test_scatter_png(tmp_path: Path) -> None:
    points = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]])
    out = scatter_png(points, [0, 1, 2], ["a", "b", "c"], tmp_path / "s.png", size=128)
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG" and img.size == (128, 128)
        pixels = np.asarray(img.convert("RGB"))
    # The point at (1, 1) lands in the top-right corner, in class 1's colour.
    assert tuple(pixels[12, 128 - 12]) == PALETTE[1]
    assert tuple(pixels[128 - 12, 12]) == PALETTE[0]
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


def test_penultimate_features_needs_forward_features() -> None:
    with pytest.raises(ConfigError, match="Linear has no forward_features"):
        penultimate_features(torch.nn.Linear(2, 2), torch.zeros(1, 2))
