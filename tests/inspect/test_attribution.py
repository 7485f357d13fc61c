"""Attribution maps: hand-computed oracles, localisation on a known object, sanity checks."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import ConstantInputWarning, spearmanr
from torch import nn

import cnnlab
from cnnlab.inspect.attribution import (
    deconvnet,
    grad_cam,
    guided_backprop,
    occlusion,
    overlay,
    saliency,
    smoothgrad,
)
from cnnlab.models.base import Classifier

SIZE, OBJ = 32, 6  # image side and object side, in pixels
MARGIN = 2  # a map's argmax may fall this many pixels outside the object's box
MODEL_ARGS = {"widths": [16, 32], "blocks": [1, 1], "num_classes": 2}


def make_objects(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images holding one bright 6x6 square (class 0) or cross (class 1).

    Returns normalised images (n, 1, 32, 32), labels (n,) and each box's top-left (n, 2).
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    corner = torch.randint(0, SIZE - OBJ + 1, (n, 2), generator=g)
    square = torch.ones(OBJ, OBJ)
    cross = torch.zeros(OBJ, OBJ)
    cross[2:4, :] = cross[:, 2:4] = 1
    shapes = torch.stack([square, cross])[labels]  # (n, 6, 6)
    # Paste each shape by padding it into place: (left, right, top, bottom) per image.
    pads = torch.stack(
        [corner[:, 1], SIZE - OBJ - corner[:, 1], corner[:, 0], SIZE - OBJ - corner[:, 0]], 1
    )
    objects = torch.stack([F.pad(s, p.tolist()) for s, p in zip(shapes, pads, strict=True)])
    noise = 0.5 * torch.rand(n, SIZE, SIZE, generator=g)
    images = torch.maximum(noise, objects)[:, None]
    return (images - 0.5) / 0.5, labels, corner


def box_mask(corner: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """(n, 32, 32) boolean masks of each object's box, grown by ``margin`` pixels."""
    idx = torch.arange(SIZE)
    low, high = corner - margin, corner + OBJ + margin  # (n, 2)
    rows = (idx >= low[:, :1]) & (idx < high[:, :1])
    cols = (idx >= low[:, 1:]) & (idx < high[:, 1:])
    return rows[:, :, None] & cols[:, None, :]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small convs on a busy 2-core machine: one thread ran the training 10x faster than
    two (3 s against 40 s; the OpenMP threads spin while waiting for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread: None) -> nn.Module:
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet_mini", **MODEL_ARGS)
    x, y, _ = make_objects(2048, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(80):  # steps of 64 images: ~12 s on 2 CPU cores, test accuracy 1.0
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return make_objects(50, seed=3)


def test_trained_model_learns_the_task(trained: nn.Module, test_set: tuple) -> None:
    x, y, _ = test_set
    with torch.no_grad():
        accuracy = (trained(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9


def argmax_in_box(maps: torch.Tensor, corner: torch.Tensor) -> float:
    flat = maps.flatten(1).argmax(dim=1)
    hits = box_mask(corner, MARGIN).flatten(1)[torch.arange(len(maps)), flat]
    return hits.float().mean().item()


def inside_beats_outside(maps: torch.Tensor, corner: torch.Tensor) -> float:
    inside = box_mask(corner)
    mean_in = (maps * inside).sum((1, 2)) / inside.sum((1, 2))
    mean_out = (maps * ~inside).sum((1, 2)) / (~inside).sum((1, 2))
    return (mean_in > mean_out).float().mean().item()


def test_grad_cam_localises_object(trained: nn.Module, test_set: tuple) -> None:
    x, y, corner = test_set
    assert argmax_in_box(grad_cam(trained, x, y), corner) >= 0.9


def test_grad_cam_by_layer_name(trained: nn.Module, test_set: tuple) -> None:
    x, y, corner = test_set
    # The last block's output is what forward_features returns.
    torch.testing.assert_close(grad_cam(trained, x, y, layer="features.5"), grad_cam(trained, x, y))
    # A BatchNorm feeding an inplace ReLU: the map must use its output, not the ReLU's.
    assert argmax_in_box(grad_cam(trained, x, y, layer="features.2"), corner) >= 0.9


def test_occlusion_localises_object(trained: nn.Module, test_set: tuple) -> None:
    x, y, corner = test_set
    maps = occlusion(trained, x, y, patch=OBJ, stride=3, fill=-1.0)  # -1: the noise floor
    assert argmax_in_box(maps, corner) >= 0.9


@pytest.mark.parametrize("method", [saliency, smoothgrad, guided_backprop])
def test_gradient_maps_concentrate_on_object(trained: nn.Module, test_set: tuple, method) -> None:
    x, y, corner = test_set
    assert inside_beats_outside(method(trained, x, y), corner) >= 0.9


def median_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    # A constant map (Grad-CAM of a random net is often all zero after its ReLU: 42 of
    # 50 test images when this was written) has no ranks to compare; scipy returns nan,
    # which we count as no correlation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        rhos = [spearmanr(p.flatten(), q.flatten())[0] for p, q in zip(a, b, strict=True)]
    return float(np.median(np.nan_to_num(np.array(rhos), nan=0.0)))


@pytest.mark.parametrize("method", [grad_cam, saliency])
def test_sanity_check_randomised_weights(trained: nn.Module, test_set: tuple, method) -> None:
    """Adebayo et al. 2018: maps that survive re-initialised weights explain nothing."""
    x, y, _ = test_set
    x, y = x[:32], y[:32]
    torch.manual_seed(123)
    random = cnnlab.create_model("resnet_mini", **MODEL_ARGS).eval()
    g = torch.Generator().manual_seed(4)
    jitter = x + 1e-3 * torch.randn(x.shape, generator=g)
    trained_maps = method(trained, x, y)
    # 0.5: a map that keeps half its rank order without any learned weights would be
    # mostly image structure (edges, the bright object) rather than the model.
    assert median_spearman(trained_maps, method(random, x, y)) < 0.5
    # ...while the metric does reach high values for maps that should agree.
    assert median_spearman(trained_maps, method(trained, jitter, y)) > 0.9


class LinearNet(nn.Module):
    def __init__(self, channels: int = 2, size: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_saliency_of_linear_model_is_weight_magnitude() -> None:
    torch.manual_seed(0)
    model = LinearNet().eval()
    x, target = torch.randn(2, 2, 4, 4), torch.tensor([0, 2])
    expected = model.fc.weight[target].abs().reshape(2, 2, 4, 4).amax(dim=1)
    low = expected.flatten(1).min(1).values[:, None, None]
    high = expected.flatten(1).max(1).values[:, None, None]
    torch.testing.assert_close(saliency(model, x, target), (expected - low) / (high - low))


class OneConvCAM(Classifier):
    """Features: one conv (same padding); head: global average pool + linear (Zhou et al. 2016)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_channels, self.num_classes = 3, 4
        self.features = nn.Conv2d(3, 5, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4))


def test_grad_cam_equals_cam_for_gap_linear_head() -> None:
    torch.manual_seed(0)
    model = OneConvCAM().eval()
    x, target = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 3])
    with torch.no_grad():
        acts = model.features(x)  # (B, K, 8, 8): no upsampling needed
        weights = model.head[2].weight[target]  # (B, K)
        cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, acts))
    low = cam.flatten(1).min(1).values[:, None, None]
    high = cam.flatten(1).max(1).values[:, None, None]
    expected = (cam - low) / (high - low)
    torch.testing.assert_close(grad_cam(model, x, target), expected)
    torch.testing.assert_close(grad_cam(model, x, target, layer="features"), expected)


def test_guided_backprop_and_deconvnet_mask_the_gradient_by_hand() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    x, target = torch.randn(2, 2, 2, 2), torch.tensor([1, 0])
    w1, w2 = model[1].weight, model[3].weight
    with torch.no_grad():
        upstream = w2[target]  # (B, 6): d logit / d relu output
        positive_input = (x.flatten(1) @ w1.T + model[1].bias) > 0
        guided = (upstream.clamp(min=0) * positive_input) @ w1
        deconv = upstream.clamp(min=0) @ w1

    def as_map(grad: torch.Tensor) -> torch.Tensor:
        m = grad.reshape(2, 2, 2, 2).abs().amax(dim=1)
        low, high = m.flatten(1).min(1).values, m.flatten(1).max(1).values
        return (m - low[:, None, None]) / (high - low)[:, None, None]

    torch.testing.assert_close(guided_backprop(model, x, target), as_map(guided))
    torch.testing.assert_close(deconvnet(model, x, target), as_map(deconv))
    assert not torch.allclose(as_map(guided), saliency(model, x, target))  # the mask mattered
    assert model[2].inplace


def test_occlusion_of_linear_model_is_hand_computed_drop() -> None:
    torch.manual_seed(0)
    model = LinearNet(num_classes=3).eval()
    x, target = torch.randn(1, 2, 4, 4), torch.tensor([2])
    occluded = x.clone()
    occluded[..., :2, 2:] = 0.5  # the top-right of four non-overlapping 2x2 patches
    with torch.no_grad():
        drop = model(x).softmax(1)[0, 2] - model(occluded).softmax(1)[0, 2]
    heat = occlusion(model, x, target, patch=2, stride=2, fill=0.5, normalize=False)
    torch.testing.assert_close(heat[0, :2, 2:], drop.expand(2, 2))


def all_hooks_gone(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


@pytest.mark.parametrize(
    "method", [saliency, smoothgrad, grad_cam, occlusion, guided_backprop, deconvnet]
)
def test_model_state_is_restored(method) -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet_mini", widths=[4], blocks=[1], num_classes=3)
    model.train()
    model.features[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    inplace = [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]
    maps = method(model, torch.randn(2, 1, 8, 8))
    assert maps.shape == (2, 8, 8)
    assert maps.min() >= 0 and maps.max() <= 1
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == inplace
    assert any(inplace) and all_hooks_gone(model)


def test_bad_arguments_are_named() -> None:
    model = OneConvCAM().eval()
    with pytest.raises(cnnlab.core.errors.ConfigError, match="nope"):
        grad_cam(model, torch.randn(1, 3, 8, 8), layer="nope")
    with pytest.raises(cnnlab.core.errors.ShapeMismatchError, match="received 3"):
        saliency(model, torch.randn(2, 3, 8, 8), target=torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    "image",
    [np.random.default_rng(0).random((8, 6)), np.zeros((8, 6, 3), np.uint8), torch.rand(3, 8, 6)],
)
def test_overlay_returns_uint8_rgb(image) -> None:
    heat = np.linspace(0, 1, 48).reshape(8, 6)
    out = overlay(image, heat, alpha=0.5)
    assert out.shape == (8, 6, 3) and out.dtype == np.uint8
    heat_only = overlay(image, heat, alpha=1.0)  # the colour map alone: hot is red, cold blue
    assert heat_only[-1, -1, 0] > heat_only[-1, -1, 2] and heat_only[0, 0, 2] > heat_only[0, 0, 0]
    assert np.array_equal(overlay(image, heat, alpha=0.0), overlay(image, 1 - heat, alpha=0.0))
