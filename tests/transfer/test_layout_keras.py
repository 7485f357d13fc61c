"""Reading Keras weight files and laying them out for cnnlab, without Keras: fake files
written with h5py in the layouts Keras writes (checked against real ones), NumPy and
PyTorch oracles for the re-layouts and the bias fold, and the model options they need.
Keras's own logits are the oracle of tests/transfer/test_interop_keras.py."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.core.errors import ConfigError, WeightsError
from cnnlab.models import create_model
from cnnlab.models.mobilenet import SamePadConv2d
from cnnlab.transfer import layout_keras
from cnnlab.transfer.layout_keras import (
    KERAS_ARCHITECTURES,
    KerasWeights,
    cnnlab_architecture,
    from_keras,
    keras_model_args,
    read_keras_weights,
)

Layers = dict[str, list[np.ndarray]]
KERAS_CLASS = {"conv": "conv2d", "depthwise": "depthwise_conv2d", "bn": "batch_normalization"}


def write_weights_h5(path: Path, layers: Layers, model_name: str, named: bool = True) -> None:
    """A Keras 3 ``.weights.h5``: ``layers/<class>_<n>/vars/<i>``, the layer name in ``name``."""
    used: dict[str, int] = {}
    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = model_name
        f.create_group("layers/add/vars").attrs["name"] = "block_2_add"  # no variables
        for name, arrays in layers.items():
            cls = KERAS_CLASS.get(_kind(name), "dense")
            used[cls] = used.get(cls, -1) + 1
            group = f.create_group(f"layers/{cls}{f'_{used[cls]}' if used[cls] else ''}/vars")
            if named:
                group.attrs["name"] = name
            for i, array in enumerate(arrays):
                group[str(i)] = array


def _kind(name: str) -> str:
    rules = {rule.keras: rule.kind for arch in layout_keras._RULES.values() for rule in arch()}
    return rules.get(name, "dense")


def keras_layers(architecture: str, state: dict[str, torch.Tensor], seed: int = 0) -> Layers:
    """cnnlab's ``state`` in Keras's layout (the inverse of ``from_keras``), conv biases
    drawn at random where Keras has them and folded back out of the BN means."""
    g = torch.Generator().manual_seed(seed)
    layers: Layers = {}
    for rule in layout_keras._RULES[architecture]():
        w = state.get(f"{rule.cnnlab}.weight")
        if rule.kind == "bn":
            arrays = [state[f"{rule.cnnlab}.{n}"] for n in layout_keras._BN_VARS]
        elif rule.kind == "conv":
            arrays = [w.permute(2, 3, 1, 0)]  # OIHW -> HWIO
        elif rule.kind == "depthwise":
            arrays = [w.permute(2, 3, 0, 1)]  # (C, 1, H, W) -> (H, W, C, 1)
        else:
            arrays = [w.t()]
        if f"{rule.cnnlab}.bias" in state and rule.kind != "bn":
            arrays.append(state[f"{rule.cnnlab}.bias"])
        elif rule.fold_into:
            bias = torch.randn(w.shape[0], generator=g)
            arrays.append(bias)
            mean = f"{rule.fold_into}.running_mean"  # read by the BN rule, which comes next
            state = {**state, mean: state[mean] + bias}
        layers[rule.keras] = [a.detach().numpy().copy() for a in arrays]
    return layers


def randomised_state(model: nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }


@pytest.fixture(scope="module")
def mobilenet() -> tuple[nn.Module, dict[str, torch.Tensor], Layers]:
    model = create_model("mobilenet_v2", num_classes=5, **keras_model_args("mobilenet_v2"))
    state = randomised_state(model)
    state = {k: v.abs() if k.endswith("running_var") else v for k, v in state.items()}
    return model, state, keras_layers("mobilenet_v2", state)


def test_weights_h5_round_trip(tmp_path: Path, mobilenet: tuple[nn.Module, dict, Layers]) -> None:
    model, state, layers = mobilenet
    write_weights_h5(tmp_path / "m.weights.h5", layers, "mobilenetv2_1.00_224")
    weights = read_keras_weights(tmp_path / "m.weights.h5")
    assert (weights.architecture, weights.model_name) == ("MobileNetV2", "mobilenetv2_1.00_224")
    assert set(weights.layers) == set(layers)  # the empty "add" group is left out
    np.testing.assert_array_equal(weights.layers["bn_Conv1"][2], layers["bn_Conv1"][2])
    mapped = from_keras("mobilenet_v2", weights, model.state_dict())
    assert set(mapped) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(mapped[key], value, msg=key)
    model.load_state_dict(mapped, strict=True)


def test_keras_zip_names_layers_from_config(tmp_path: Path) -> None:
    """A .keras whose groups carry no names: config.json's layer order names them."""
    layers = {
        "Conv1": [np.ones((3, 3, 3, 8), "f4")],
        "bn_Conv1": [np.full(8, i, "f4") for i in range(4)],
    }
    write_weights_h5(tmp_path / "model.weights.h5", {"Conv1": layers["Conv1"]}, "m", named=False)
    with h5py.File(tmp_path / "model.weights.h5", "a") as f:
        for i, array in enumerate(layers["bn_Conv1"]):
            f[f"layers/batch_normalization/vars/{i}"] = array
    config = {
        "class_name": "Functional",
        "config": {
            "name": "net",
            "layers": [
                {"class_name": cls, "config": {"name": name}}
                for cls, name in [
                    ("InputLayer", "input_layer"),
                    ("Conv2D", "Conv1"),
                    ("BatchNormalization", "bn_Conv1"),
                    ("ReLU", "Conv1_relu"),
                ]
            ],
        },
    }
    with zipfile.ZipFile(tmp_path / "net.keras", "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.write(tmp_path / "model.weights.h5", "model.weights.h5")
    weights = read_keras_weights(tmp_path / "net.keras")
    assert weights.layers.keys() == {"Conv1", "bn_Conv1"}
    assert [a[0] for a in weights.layers["bn_Conv1"]] == [0, 1, 2, 3]  # variable order kept
    assert weights.model_name == "m"
    with pytest.raises(WeightsError, match="does not name its layers"):
        read_keras_weights(tmp_path / "model.weights.h5")


def test_keras2_h5(tmp_path: Path) -> None:
    """Keras 2's layout: ``layer_names`` and per-layer ``weight_names`` attributes."""
    kernel, bias = np.arange(6, dtype="f4").reshape(2, 3), np.ones(3, "f4")
    with h5py.File(tmp_path / "old.h5", "w") as f:
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [b"input_1", b"predictions"]
        root.create_group("input_1").attrs["weight_names"] = []
        group = root.create_group("predictions")
        group.attrs["weight_names"] = [b"predictions/kernel:0", b"predictions/bias:0"]
        group["predictions/kernel:0"], group["predictions/bias:0"] = kernel, bias
    weights = read_keras_weights(tmp_path / "old.h5")
    assert list(weights.layers) == ["predictions"] and weights.architecture is None
    np.testing.assert_array_equal(weights.layers["predictions"][0], kernel)


def test_not_keras_files(tmp_path: Path) -> None:
    (tmp_path / "a.h5").write_text("not hdf5")
    with pytest.raises(WeightsError, match="not an HDF5"):
        read_keras_weights(tmp_path / "a.h5")
    with zipfile.ZipFile(tmp_path / "b.keras", "w") as archive:
        archive.writestr("other.txt", "")
    with pytest.raises(WeightsError, match=r"not a \.keras file"):
        read_keras_weights(tmp_path / "b.keras")
    with pytest.raises(FileNotFoundError):
        read_keras_weights(tmp_path / "missing.weights.h5")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"block1_conv1", "block5_conv3", "fc1"}, "VGG16"),
        ({"block1_conv1", "block5_conv4"}, "VGG19"),
        ({"block1_conv1", "block1_conv1_bn", "block2_sepconv1"}, "Xception"),
        (
            {"conv1_conv", "conv2_block1_3_conv", *(f"conv4_block{i}_1_conv" for i in range(1, 7))},
            "ResNet50",
        ),
        (
            {
                "conv1_conv",
                "conv2_block1_3_conv",
                *(f"conv4_block{i}_1_conv" for i in range(1, 24)),
            },
            "ResNet101",
        ),
        ({"conv1_conv", "post_bn", *(f"conv4_block{i}_1_conv" for i in range(1, 7))}, "ResNet50V2"),
        ({"bn_Conv1", "block_16_project"}, "MobileNetV2"),
        ({"conv1", "conv_dw_1"}, "MobileNet"),
        ({"conv2d", "conv2d_1"}, None),
    ],
)
def test_architecture_from_layer_names(names: set[str], expected: str | None) -> None:
    assert layout_keras._infer_architecture(names) == expected


def test_unmapped_architecture_is_named() -> None:
    weights = KerasWeights({"block1_conv1": []}, "VGG19", "vgg19")
    for call in (lambda: cnnlab_architecture(weights), lambda: from_keras("vgg16", weights, {})):
        with pytest.raises(WeightsError) as error:
            call()
        message = str(error.value)
        assert "VGG19" in message and "'vgg19'" in message
        assert all(keras in message for keras in KERAS_ARCHITECTURES)
    with pytest.raises(WeightsError, match="unrecognised"):
        cnnlab_architecture(KerasWeights({"dense": []}, None))
    with pytest.raises(WeightsError, match="received architecture='resnet50'"):
        from_keras("resnet50", KerasWeights({}, "MobileNetV2"), {})
    with pytest.raises(WeightsError, match="expected one of"):
        keras_model_args("alexnet")


def test_shape_mismatch_names_both_sides(mobilenet: tuple[nn.Module, dict, Layers]) -> None:
    model, _, layers = mobilenet
    bad = {**layers, "block_3_project": [np.zeros((1, 1, 144, 40), "f4")]}
    with pytest.raises(WeightsError) as error:
        from_keras("mobilenet_v2", KerasWeights(bad, "MobileNetV2"), model.state_dict())
    message = str(error.value)
    assert "'block_3_project'" in message and "'features.4.conv.6.weight'" in message
    assert "(1, 1, 144, 40)" in message and "(32, 144, 1, 1)" in message


def test_missing_and_extra_layers(mobilenet: tuple[nn.Module, dict, Layers]) -> None:
    model, _, layers = mobilenet
    missing = {k: v for k, v in layers.items() if k != "block_5_depthwise_BN"}
    with pytest.raises(
        WeightsError, match=r"'block_5_depthwise_BN' is not in the file.*features\.6\.conv\.4"
    ):
        from_keras("mobilenet_v2", KerasWeights(missing, "MobileNetV2"), model.state_dict())
    extra = {**layers, "my_dense": [np.zeros((2, 2), "f4")]}
    with pytest.raises(WeightsError, match="no place for: my_dense"):
        from_keras("mobilenet_v2", KerasWeights(extra, "MobileNetV2"), model.state_dict())


def test_head_of_other_width_and_no_top(mobilenet: tuple[nn.Module, dict, Layers]) -> None:
    _, _, layers = mobilenet
    target = create_model("mobilenet_v2", num_classes=3).state_dict()
    mapped = from_keras("mobilenet_v2", KerasWeights(layers, "MobileNetV2"), target)
    assert mapped["head.3.weight"].shape == (5, 1280) and mapped["head.3.bias"].shape == (5,)
    no_top = {k: v for k, v in layers.items() if k != "predictions"}
    mapped = from_keras("mobilenet_v2", KerasWeights(no_top, "MobileNetV2"), target)
    assert not any(k.startswith("head.") for k in mapped)


def test_vgg_flatten_permutation() -> None:
    """Keras's Dense over (H, W, C)-flattened maps == cnnlab's Linear over (C, H, W) ones."""
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((3, 3, 4)).astype("f4")  # (H, W, C)
    kernel = rng.standard_normal((3 * 3 * 4, 5)).astype("f4")
    expected = maps.reshape(-1) @ kernel  # Keras: Flatten, then x @ kernel
    rule = layout_keras.Rule("fc1", "head.3", "dense", flatten=4)
    weight = layout_keras._relayout(rule, kernel, "weight").numpy()
    np.testing.assert_allclose(weight @ maps.transpose(2, 0, 1).reshape(-1), expected, rtol=1e-5)


def test_depthwise_relayout_against_tf_formula() -> None:
    """TF's depthwise conv: out[..., c * M + m] = sum filter[i, j, c, m] * in[..., c]."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 4, 3)).astype("f4")  # (H, W, C), valid 3x3 -> 2x2
    kernel = rng.standard_normal((3, 3, 3, 2)).astype("f4")  # multiplier M = 2
    expected = np.zeros((2, 2, 6), "f4")
    for i in range(2):
        for j in range(2):
            patch = x[i : i + 3, j : j + 3]  # (3, 3, C)
            expected[i, j] = np.einsum("hwc,hwcm->cm", patch, kernel).reshape(-1)
    weight = layout_keras._relayout(layout_keras.Rule("d", "d", "depthwise"), kernel, "weight")
    got = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], weight, groups=3)[0]
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_bias_fold_into_batch_norm(train: bool) -> None:
    """ResNet50's conv bias folded into BN's mean computes what conv + bias + BN does,
    in eval and train mode, and the running means stay ``bias`` apart."""
    model = create_model("resnet50", num_classes=4, **keras_model_args("resnet50"))
    state = randomised_state(model)
    state = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in state.items()}
    layers = keras_layers("resnet50", state)
    mapped = from_keras("resnet50", KerasWeights(layers, "ResNet50"), model.state_dict())
    kernel, bias = (torch.from_numpy(a) for a in layers["conv1_conv"])
    gamma, beta, mean, var = (torch.from_numpy(a) for a in layers["conv1_bn"])
    torch.testing.assert_close(mapped["features.bn1.running_mean"], mean - bias)
    x = torch.randn(4, 3, 16, 16)
    keras_bn = nn.BatchNorm2d(64, eps=1.001e-5, momentum=0.01)
    keras_bn.load_state_dict(
        {"weight": gamma, "bias": beta, "running_mean": mean, "running_var": var}, strict=False
    )
    cnnlab_bn = nn.BatchNorm2d(64, eps=1.001e-5, momentum=0.01)
    cnnlab_bn.load_state_dict({k: mapped[f"features.bn1.{k}"] for k in cnnlab_bn.state_dict()})
    keras_bn.train(train)
    cnnlab_bn.train(train)
    conv = F.conv2d(x, kernel.permute(3, 2, 0, 1), stride=2, padding=3)
    torch.testing.assert_close(
        cnnlab_bn(conv), keras_bn(conv + bias[:, None, None]), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        cnnlab_bn.running_mean, keras_bn.running_mean - bias, atol=1e-6, rtol=1e-6
    )
    again = from_keras("resnet50", KerasWeights(layers, "ResNet50"), model.state_dict())
    torch.testing.assert_close(again["features.bn1.running_mean"], mean - bias)  # not folded twice


def test_model_options_keep_names_and_counts() -> None:
    def layout(name: str, **options: object) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in create_model(name, **options).state_dict().items()}

    for name in KERAS_ARCHITECTURES.values():
        assert layout(name, **keras_model_args(name)) == layout(name)
    model = create_model("resnet50", stride_in_1x1=True)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision's count
    block = model.features.layer2[0]
    assert (block.conv1.stride, block.conv2.stride) == ((2, 2), (1, 1))
    default = create_model("resnet50").features.layer2[0]
    assert (default.conv1.stride, default.conv2.stride) == ((1, 1), (2, 2))
    for name in ("resnet50", "mobilenet_v2"):
        norms = [
            m
            for m in create_model(name, bn_eps=1e-3, bn_momentum=0.01).modules()
            if isinstance(m, nn.BatchNorm2d)
        ]
        assert norms and all((m.eps, m.momentum) == (1e-3, 0.01) for m in norms)
    with pytest.raises(ConfigError, match="BasicBlock"):
        create_model("resnet18", stride_in_1x1=True)
    with pytest.raises(ConfigError, match="padding='valid'"):
        create_model("mobilenet_v2", padding="valid")


@pytest.mark.parametrize(("side", "before"), [(8, 0), (7, 1)])
def test_same_padding_is_tensorflows(side: int, before: int) -> None:
    """TF "same" at stride 2, 3x3 (Keras's ``correct_pad``): 0 before and 1 after on an
    even side, 1 and 1 on an odd one; the output side is ceil(side / 2)."""
    conv = SamePadConv2d(2, 3, 3, stride=2)
    x = torch.randn(1, 2, side, side)
    expected = F.conv2d(F.pad(x, (before, 1, before, 1)), conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape[-1] == -(-side // 2)
    model = create_model("mobilenet_v2", padding="same")
    strided = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 5 and all(type(m) is SamePadConv2d for m in strided)
