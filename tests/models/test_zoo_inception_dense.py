"""GoogLeNet, Inception v3, Xception and DenseNet against published parameter counts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from cnnlab.core.errors import ShapeMismatchError
from cnnlab.models import densenet, googlenet, inception_v3, xception
from cnnlab.models.registry import create_model, model_info

NAMES = [
    "googlenet",
    "inception_v3",
    "xception",
    "densenet121",
    "densenet169",
    "densenet201",
    "densenet_bc_100_12",
]
AUX_MODELS = {"googlenet": 2, "inception_v3": 1}  # name -> side classifiers


def test_modules_register_their_builders() -> None:
    builders = [googlenet.googlenet, inception_v3.inception_v3, xception.xception]
    builders += [densenet.densenet121, densenet.densenet169, densenet.densenet201]
    builders += [densenet.densenet_bc_100_12]
    assert [model_info(name).builder for name in NAMES] == builders


def meta_model(name: str, **kwargs: object) -> Any:  # Any: models add attributes
    # On the meta device no memory is allocated: counting DenseNet-201 takes milliseconds.
    with torch.device("meta"):
        return create_model(name, **kwargs)


def n_params(name: str, **kwargs: object) -> int:
    return sum(p.numel() for p in meta_model(name, **kwargs).parameters())


# ImageNet, 3 channels, 1000 classes. Source: torchvision.models, the "num_params" of each
# *_Weights.IMAGENET1K_V1 entry (pytorch/vision, models/googlenet.py, inception.py,
# densenet.py). GoogLeNet's 6,624,904 is without the side classifiers (torchvision drops
# them after loading weights); Inception v3's 27,161,264 includes its AuxLogits.
TORCHVISION_COUNTS = {
    ("googlenet", False): 6_624_904,
    ("inception_v3", True): 27_161_264,
    ("densenet121", True): 7_978_856,
    ("densenet169", True): 14_149_480,
    ("densenet201", True): 20_013_928,
}


@pytest.mark.parametrize(("name", "aux_logits"), sorted(TORCHVISION_COUNTS))
def test_counts_match_torchvision(name: str, aux_logits: bool) -> None:
    kwargs = {} if name.startswith("densenet") else {"aux_logits": aux_logits}
    assert n_params(name, **kwargs) == TORCHVISION_COUNTS[name, aux_logits]


def test_googlenet_with_side_classifiers_matches_torchvision_untrained() -> None:
    # torchvision.models.googlenet() untrained (aux_logits=True): 13,004,888, as public
    # parameter-count scripts print it; each side classifier adds about 3.2M (mostly fc1).
    assert n_params("googlenet") == 13_004_888


def test_xception_count_matches_keras_applications() -> None:
    # Keras Applications table: Xception, 22,910,480 parameters; model.summary() splits it
    # into 22,855,952 trainable + 54,528 non-trainable, the BN moving means and variances,
    # which PyTorch keeps as buffers rather than parameters.
    model = meta_model("xception")
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("_mean", "_var")))
    assert sum(p.numel() for p in model.parameters()) == 22_855_952
    assert stats == 54_528


def test_densenet_bc_count_matches_the_paper() -> None:
    # Huang et al. 2017, Table 2: DenseNet-BC (L=100, k=12) has 0.8M parameters; exactly
    # 769,162 for CIFAR-10 in osmr/imgclsmob (densenet100_k12_bc_cifar10).
    count = n_params("densenet_bc_100_12")
    assert count == 769_162
    assert round(count / 1e6, 1) == 0.8


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_at_the_test_input_shape(name: str) -> None:
    torch.manual_seed(0)
    model: Any = create_model(name, num_classes=3).train()
    shape = model_info(name).test_input_shape
    assert shape is not None and shape[-1] == model.min_size  # the smallest that runs
    x, y = torch.randn(2, *shape), torch.tensor([0, 2])
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    if name in AUX_MODELS:
        assert [a.shape for a in model.aux_outputs] == [(2, 3)] * AUX_MODELS[name]
        aux_loss = model.auxiliary_loss(nn.CrossEntropyLoss(), y)
        assert torch.isfinite(aux_loss) and aux_loss > 0
        assert model.aux_outputs == ()  # cleared once used
        loss = loss + aux_loss
    loss.backward()
    assert logits.shape == (2, 3)
    assert all(p.grad is not None for p in model.parameters())  # side heads trained too


def test_googlenet_auxiliary_loss_is_0_3_times_the_side_losses() -> None:
    torch.manual_seed(0)
    model: Any = create_model("googlenet", num_classes=4).train()
    y = torch.tensor([1, 3])
    model(torch.randn(2, 3, 15, 15))
    aux1, aux2 = model.aux_outputs
    expected = 0.3 * (nn.functional.cross_entropy(aux1, y) + nn.functional.cross_entropy(aux2, y))
    torch.testing.assert_close(model.auxiliary_loss(nn.CrossEntropyLoss(), y), expected)


@pytest.mark.parametrize("name", sorted(AUX_MODELS))
def test_eval_mode_skips_the_side_classifiers(name: str) -> None:
    model = meta_model(name).eval()
    calls: list[str] = []
    for child_name, child in model.named_children():
        if child_name.startswith(("aux", "Aux")):
            child.register_forward_hook(lambda *_, n=child_name: calls.append(n))
    side = model_info(name).test_input_shape
    assert side is not None
    logits = model(torch.zeros(2, *side, device="meta"))
    assert logits.shape == (2, 1000)
    assert calls == [] and model.aux_outputs == ()
    assert model.auxiliary_loss(nn.CrossEntropyLoss(), torch.zeros(2, dtype=torch.long)) == 0


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier(name: str) -> None:
    model = meta_model(name).train()
    with torch.device("meta"):
        model.reset_classifier(7)
    shape = model_info(name).test_input_shape
    assert shape is not None
    assert model(torch.zeros(2, *shape, device="meta")).shape == (2, 7)
    assert [a.shape for a in getattr(model, "aux_outputs", ())] == [(2, 7)] * AUX_MODELS.get(
        name, 0
    )


@pytest.mark.parametrize("name", NAMES)
def test_below_the_minimum_size_names_it(name: str) -> None:
    model = meta_model(name).eval()
    size = model.min_size
    with pytest.raises(ShapeMismatchError, match=rf"at least {size}x{size}"):
        model(torch.zeros(1, 3, size, size - 1, device="meta"))
