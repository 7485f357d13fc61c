"""1-D CNNs: WDCNN against its paper's layer table and a hand count, the Classifier contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.summary import summary
from cnnlab.models import Classifier, create_model, model_info
from cnnlab.models.signal_nets import WDCNN, ResNet1d

NAMES = ["wdcnn", "resnet1d"]

# Zhang et al. 2017, Table 1, output size (width x depth) of each layer for 2048 samples.
WDCNN_TABLE = [
    ("Conv1d", (16, 128)),
    ("MaxPool1d", (16, 64)),
    ("Conv1d", (32, 64)),
    ("MaxPool1d", (32, 32)),
    ("Conv1d", (64, 32)),
    ("MaxPool1d", (64, 16)),
    ("Conv1d", (64, 16)),
    ("MaxPool1d", (64, 8)),
    ("Conv1d", (64, 6)),
    ("MaxPool1d", (64, 3)),
    ("Linear", (100,)),
    ("Linear", (10,)),
]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_wdcnn_matches_the_papers_layer_table() -> None:
    rows = summary(WDCNN(num_classes=10), (1, 2048))
    shapes = [(r.kind, r.output_shape) for r in rows if r.kind in ("Conv1d", "MaxPool1d", "Linear")]
    assert shapes == WDCNN_TABLE
    first = WDCNN().features.get_submodule("0")
    assert isinstance(first, nn.Conv1d)
    assert (first.kernel_size, first.stride, first.out_channels) == ((64,), (16,), 16)


def test_wdcnn_parameter_count_by_hand() -> None:
    convs = 64 * 1 * 16 + 3 * 16 * 32 + 3 * 32 * 64 + 3 * 64 * 64 + 3 * 64 * 64  # no biases
    batch_norms = 2 * (16 + 32 + 64 + 64 + 64 + 100)  # scale and shift
    dense = 64 * 3 * 100 + (100 * 10 + 10)  # FC 100 (BN holds its shift), output layer
    assert convs + batch_norms + dense == 54_170
    assert n_params(WDCNN(num_classes=10)) == 54_170


def test_resnet1d_lengths() -> None:
    model = ResNet1d()
    x = torch.randn(2, 1, 2048)
    assert model.forward_features(x).shape == (2, 128, 64)  # 2048 / 32
    assert model(torch.randn(2, 1, 300)).shape == (2, 10)  # any length


def test_registry_entries() -> None:
    assert model_info("wdcnn").input_shape == (1, 2048) and model_info("wdcnn").fixed_input
    assert model_info("wdcnn").year == 2017 and model_info("wdcnn").task == "classify"
    assert model_info("resnet1d").input_shape == (1, 2048)


@pytest.mark.parametrize("name", NAMES)
def test_contract_and_a_few_adam_steps_lower_the_loss(name: str) -> None:
    info = model_info(name)
    c, length = info.test_input_shape or info.input_shape
    torch.manual_seed(0)
    model = create_model(name, in_channels=c, num_classes=7)
    assert isinstance(model, Classifier) and model.num_classes == 7
    x, y = torch.randn(6, c, length), torch.arange(6) % 7
    model.eval()
    features = model.forward_features(x)
    assert features.dim() == 3 and features.shape[0] == 6  # (B, C', L')
    assert torch.equal(model.forward_head(features), model(x))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, f"no gradient for {missing}"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier(name: str) -> None:
    model = create_model(name, num_classes=10).eval()
    assert isinstance(model, Classifier)
    body = [p.clone() for p in model.features.parameters()]
    model.reset_classifier(3)
    assert model.num_classes == 3
    assert model(torch.randn(2, 1, 2048)).shape == (2, 3)
    assert all(torch.equal(a, b) for a, b in zip(body, model.features.parameters(), strict=True))
    with pytest.raises(ConfigError, match="num_classes=0"):
        model.reset_classifier(0)


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        ("wdcnn", (2, 2048), r"\(B, 1, 2048\), received \(2, 2048\)"),
        ("wdcnn", (2, 1, 1000), r"\(B, 1, 2048\), received \(2, 1, 1000\)"),
        ("wdcnn", (2, 1, 32, 64), r"\(B, 1, 2048\), received \(2, 1, 32, 64\)"),
        ("resnet1d", (2, 2048), r"\(B, 1, L\), received \(2, 2048\)"),
        ("resnet1d", (2, 3, 2048), r"\(B, 1, L\), received \(2, 3, 2048\)"),
    ],
)
def test_wrong_input_names_both_shapes(name: str, shape: tuple[int, ...], expected: str) -> None:
    model = create_model(name)
    with pytest.raises(ShapeMismatchError, match=expected):
        model(torch.zeros(shape))


def test_wdcnn_other_input_sizes_and_bad_configs() -> None:
    assert WDCNN(input_size=4096).num_features == 64 * 7  # 4096 -> 256 ... 14 -> 7
    assert WDCNN(in_channels=2)(torch.randn(2, 2, 2048)).shape == (2, 10)
    with pytest.raises(ConfigError, match="input_size=1000"):
        WDCNN(input_size=1000)
    with pytest.raises(ConfigError, match=r"widths=\[16, 32\], blocks=\[1\]"):
        ResNet1d(widths=(16, 32), blocks=(1,))
