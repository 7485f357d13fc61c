"""Mapping torchvision's state-dict keys onto cnnlab's zoo models, without torchvision.

The oracle here is torchvision's real key names, written out (read from torchvision 0.29's
``resnet18().state_dict()`` and ``googlenet().state_dict()``), and the renames its docs
imply; the logits oracle is ``test_interop_torchvision.py``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from cnnlab.core.errors import WeightsError
from cnnlab.models import create_model, list_models
from cnnlab.transfer.layout_torchvision import (
    TORCHVISION_ARCHITECTURES,
    from_torchvision,
    is_torchvision_layout,
)

# torchvision's resnet18, module by module, in its state-dict order.
TV_RESNET18_MODULES = [
    "conv1",
    "bn1",
    "layer1.0.conv1",
    "layer1.0.bn1",
    "layer1.0.conv2",
    "layer1.0.bn2",
    "layer1.1.conv1",
    "layer1.1.bn1",
    "layer1.1.conv2",
    "layer1.1.bn2",
    "layer2.0.conv1",
    "layer2.0.bn1",
    "layer2.0.conv2",
    "layer2.0.bn2",
    "layer2.0.downsample.0",
    "layer2.0.downsample.1",
    "layer2.1.conv1",
    "layer2.1.bn1",
    "layer2.1.conv2",
    "layer2.1.bn2",
    "layer3.0.conv1",
    "layer3.0.bn1",
    "layer3.0.conv2",
    "layer3.0.bn2",
    "layer3.0.downsample.0",
    "layer3.0.downsample.1",
    "layer3.1.conv1",
    "layer3.1.bn1",
    "layer3.1.conv2",
    "layer3.1.bn2",
    "layer4.0.conv1",
    "layer4.0.bn1",
    "layer4.0.conv2",
    "layer4.0.bn2",
    "layer4.0.downsample.0",
    "layer4.0.downsample.1",
    "layer4.1.conv1",
    "layer4.1.bn1",
    "layer4.1.conv2",
    "layer4.1.bn2",
    "fc",
]
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# torchvision's GoogLeNet side classifier (aux2 alike), as its state dict lists it.
TV_GOOGLENET_AUX1 = [
    "aux1.conv.conv.weight",
    "aux1.conv.bn.weight",
    "aux1.conv.bn.bias",
    "aux1.conv.bn.running_mean",
    "aux1.conv.bn.running_var",
    "aux1.conv.bn.num_batches_tracked",
    "aux1.fc1.weight",
    "aux1.fc1.bias",
    "aux1.fc2.weight",
    "aux1.fc2.bias",
]
Target = dict[str, torch.Tensor]
# cnnlab's dense layer is one Sequential: the index of each unit torchvision names.
TV_DENSE_LAYER = {"0": "norm1", "2": "conv1", "3": "norm2", "5": "conv2"}
FIXTURES_SCRIPT = Path(__file__).parent / "peers" / "torchvision_fixtures.py"


def tv_resnet18_keys() -> list[str]:
    """torchvision resnet18's 122 state-dict keys."""
    keys = []
    for module in TV_RESNET18_MODULES:
        if module == "fc":
            keys += ["fc.weight", "fc.bias"]
        elif "bn" in module or module.endswith("downsample.1"):
            keys += [f"{module}.{name}" for name in BN_TENSORS]
        else:
            keys.append(f"{module}.weight")
    return keys


def cnnlab_name(tv_key: str) -> str:
    """The cnnlab key of a torchvision ResNet key: the body under ``features``, fc is head.2."""
    return tv_key.replace("fc.", "head.2.") if tv_key.startswith("fc.") else f"features.{tv_key}"


def tv_resnet18_state(
    num_classes: int = 1000, in_channels: int = 3, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A torchvision-keyed resnet18 state dict of random tensors shaped by cnnlab's twin."""
    like = create_model("resnet18", num_classes=num_classes, in_channels=in_channels).state_dict()
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key in tv_resnet18_keys():
        shape = like[cnnlab_name(key)].shape
        counter = key.endswith("num_batches_tracked")
        state[key] = torch.randint(9, shape) if counter else torch.randn(shape, generator=g)
    return state


@pytest.fixture(scope="module")
def resnet18_target() -> Target:
    return create_model("resnet18", num_classes=10, in_channels=3).state_dict()


def test_resnet18_keys_land_where_torchvision_names_say(resnet18_target: Target) -> None:
    state = tv_resnet18_state(num_classes=10)
    assert len(state) == len(resnet18_target) == 122
    mapped = from_torchvision("resnet18", state, resnet18_target)
    assert list(mapped) == list(resnet18_target)
    for key, tensor in state.items():
        assert mapped[cnnlab_name(key)] is tensor, key


def test_mapped_resnet18_loads_strictly(resnet18_target: Target) -> None:
    state = tv_resnet18_state(num_classes=10)
    model = create_model("resnet18", num_classes=10, in_channels=3)
    model.load_state_dict(from_torchvision("resnet18", state, resnet18_target), strict=True)
    assert torch.equal(model.head[2].bias, state["fc.bias"])
    assert torch.equal(model.features.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_detects_torchvision_layout(resnet18_target: Target) -> None:
    assert is_torchvision_layout("resnet18", tv_resnet18_keys())
    assert is_torchvision_layout("resnet18", iter(tv_resnet18_keys()))  # any iterable
    assert not is_torchvision_layout("resnet18", resnet18_target)
    assert not is_torchvision_layout("vgg16", tv_resnet18_keys())  # another family's keys
    assert not is_torchvision_layout("lenet5", tv_resnet18_keys())  # no torchvision twin
    assert not is_torchvision_layout("resnet18", [])
    assert not is_torchvision_layout("resnet18", [*tv_resnet18_keys(), "head.2.weight"])


def test_other_head_and_input_widths_come_back_unchanged() -> None:
    target = create_model("resnet18", num_classes=10, in_channels=1).state_dict()
    state = tv_resnet18_state(num_classes=1000, in_channels=3)
    mapped = from_torchvision("resnet18", state, target)
    assert mapped["head.2.weight"] is state["fc.weight"]  # (1000, 512), cnnlab wants (10, 512)
    assert mapped["head.2.bias"].shape == (1000,)
    assert mapped["features.conv1.weight"].shape == (64, 3, 7, 7)  # cnnlab wants (64, 1, 7, 7)


def test_missing_tensor_names_both_sides(resnet18_target: Target) -> None:
    state = tv_resnet18_state(num_classes=10)
    del state["layer3.1.bn2.running_var"]
    with pytest.raises(WeightsError, match="resnet18") as caught:
        from_torchvision("resnet18", state, resnet18_target)
    assert "layer3.1.bn2.weight (256,)" in str(caught.value)  # torchvision's side
    assert "features.layer3.1.bn2.running_var (256,)" in str(caught.value)  # cnnlab's side


def test_extra_tensor_is_named(resnet18_target: Target) -> None:
    state = {**tv_resnet18_state(num_classes=10), "fc2.weight": torch.zeros(3, 3)}
    with pytest.raises(WeightsError, match=r"fc2\.weight \(3, 3\)"):
        from_torchvision("resnet18", state, resnet18_target)


def test_wrong_shape_inside_the_body_is_refused(resnet18_target: Target) -> None:
    # Only the stem conv's in_channels and the classifier's num_classes may differ.
    state = tv_resnet18_state(num_classes=10)
    state["layer2.0.conv2.weight"] = torch.zeros(128, 64, 3, 3)  # should be (128, 128, 3, 3)
    with pytest.raises(WeightsError, match=r"layer2\.0\.conv2\.weight \(128, 64, 3, 3\)"):
        from_torchvision("resnet18", state, resnet18_target)


def test_checkpoint_without_bn_counters_gets_zero_counters(resnet18_target: Target) -> None:
    state = {k: v for k, v in tv_resnet18_state(10).items() if "num_batches" not in k}
    mapped = from_torchvision("resnet18", state, resnet18_target)
    assert list(mapped) == list(resnet18_target)
    assert int(mapped["features.bn1.num_batches_tracked"]) == 0


def test_unmapped_architecture_is_refused() -> None:
    with pytest.raises(WeightsError, match=r"'lenet5'.*resnet18"):
        from_torchvision("lenet5", {}, {})


def tv_googlenet_state() -> dict[str, torch.Tensor]:
    """A torchvision-keyed GoogLeNet state dict: cnnlab's, with torchvision's names."""
    state = {}
    for key, tensor in create_model("googlenet", num_classes=10).state_dict().items():
        if key.startswith("features."):
            key = key.removeprefix("features.")
        elif key.startswith("head.3."):
            key = key.replace("head.3.", "fc.")
        state[key] = tensor
    assert [k for k in state if k.startswith("aux1.")] == TV_GOOGLENET_AUX1
    return state


def test_googlenet_side_classifiers_map_or_drop() -> None:
    state = tv_googlenet_state()
    with_aux = create_model("googlenet", num_classes=10, aux_logits=True).state_dict()
    mapped = from_torchvision("googlenet", state, with_aux)
    assert mapped["aux2.fc2.weight"] is state["aux2.fc2.weight"]
    assert mapped["head.3.weight"] is state["fc.weight"]
    # They run in training only, so a model built without them still gives the logits.
    without = create_model("googlenet", num_classes=10, aux_logits=False).state_dict()
    assert list(from_torchvision("googlenet", state, without)) == list(without)
    headless = {k: v for k, v in state.items() if not k.startswith("aux")}
    with pytest.raises(WeightsError, match=r"googlenet.*aux1\.conv\.conv\.weight"):
        from_torchvision("googlenet", headless, with_aux)


def test_densenet_layers_map_by_name_whatever_the_key_order() -> None:
    target = create_model("densenet121", num_classes=10).state_dict()
    state = {}
    for key, tensor in target.items():
        key = re.sub(
            r"layers\.(\d+)\.layers\.(\d)\.",
            lambda m: f"denselayer{int(m[1]) + 1}.{TV_DENSE_LAYER[m[2]]}.",
            key,
        )
        state[key.replace("head.2.", "classifier.")] = tensor
    assert "features.denseblock4.denselayer16.conv2.weight" in state  # torchvision's name
    # Reversed, as no state dict lists them: pairing goes by name, not by position.
    mapped = from_torchvision("densenet121", dict(reversed(state.items())), target)
    assert list(mapped) == list(target)
    assert all(mapped[key] is tensor for key, tensor in target.items())


def test_every_mapped_architecture_is_a_zoo_model() -> None:
    assert set(TORCHVISION_ARCHITECTURES) <= set(list_models())
    assert {"seresnet50", "wrn28_10", "wrn40_4"}.isdisjoint(TORCHVISION_ARCHITECTURES)


def test_fixture_script_covers_every_mapped_architecture() -> None:
    spec = importlib.util.spec_from_file_location("torchvision_fixtures", FIXTURES_SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # its table imports nothing of torchvision
    assert list(script.ARCHITECTURES) == list(TORCHVISION_ARCHITECTURES)
    widths = {kwargs["num_classes"] for kwargs, _ in script.ARCHITECTURES.values()}
    assert len(widths) > 1  # heads of other widths than ImageNet's map too
