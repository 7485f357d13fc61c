"""Every registered segmentation model: the Segmenter contract, and it learns a toy task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from cnnlab import create_model, list_models
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.models import Segmenter, model_info

SEGMENTERS = list_models(task="segment")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small convs on a busy 2-core machine: one thread trains them several times faster
    than two (the OpenMP threads spin while waiting for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def squares(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy dark images with one bright square each; the mask marks the square (class 1)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 1, size, size, generator=g)
    mask = torch.zeros(n, size, size, dtype=torch.long)
    sides = torch.randint(6, size // 2, (n,), generator=g)
    for i in range(n):  # test data only
        s = int(sides[i])
        r, c = torch.randint(0, size - s, (2,), generator=g).tolist()
        x[i, 0, r : r + s, c : c + s] += 1.0
        mask[i, r : r + s, c : c + s] = 1
    return x, mask


def test_the_zoo_has_the_five_papers() -> None:
    assert SEGMENTERS == ["deeplab", "fcn32s", "fcn8s", "pspnet", "segnet", "unet"]
    assert all(model_info(name).task == "segment" for name in SEGMENTERS)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_contract_shapes_and_gradients(name: str) -> None:
    c, h, w = model_info(name).test_input_shape or model_info(name).input_shape
    torch.manual_seed(0)
    model = create_model(name, in_channels=c, num_classes=5)
    assert isinstance(model, Segmenter) and model.num_classes == 5
    x = torch.randn(3, c, h, w)
    model.eval()
    features = model.forward_features(x)
    assert all(f.dim() == 4 and f.shape[0] == 3 for f in features)
    # Each level is exactly H/s x W/s, s a divisor of the model's stride (SegNet's
    # coarsest pyramid level comes before its last pool, so its s is half the stride).
    for f in features:
        s = h // f.shape[-2]
        assert f.shape[-2:] == (h // s, w // s) and model.stride % s == 0
    assert torch.equal(model.forward_head(features, (h, w)), model(x))
    # Another size, not square: every multiple of the stride works.
    tall = torch.randn(2, c, 2 * model.stride, 3 * model.stride)
    assert model(tall).shape == (2, 5, 2 * model.stride, 3 * model.stride)
    model.train()
    loss = nn.functional.cross_entropy(model(x), torch.randint(0, 5, (3, h, w)))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient for {missing}"
    model.reset_classifier(3)
    assert model(x).shape == (3, 3, h, w)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_bad_input_names_the_shape_and_the_multiple(name: str) -> None:
    model = create_model(name, in_channels=1)
    s = model.stride
    with pytest.raises(ShapeMismatchError, match=rf"multiples of {s} .*\(1, 1, {2 * s + 1}, {s}\)"):
        model(torch.zeros(1, 1, 2 * s + 1, s))
    with pytest.raises(ShapeMismatchError, match=rf"\(B, 1, H, W\).*\(1, 3, {s}, {s}\)"):
        model(torch.zeros(1, 3, s, s))
    with pytest.raises(ConfigError, match="num_classes=0"):
        create_model(name, num_classes=0)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_a_few_dozen_steps_learn_bright_squares(name: str) -> None:
    x, mask = squares(8, 32, seed=0)
    torch.manual_seed(0)
    model = create_model(name)  # defaults: 1 channel, 2 classes
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Measured: the last loss is 2% (FCN-8s) to 15% (SegNet) of the first.
    assert losses[-1] < 0.3 * losses[0]
