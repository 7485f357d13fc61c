"""Model summary: MACs, parameters, memory and receptive field against seeds, PyTorch and torchvision."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.app.cli import main
from cnnlab.inspect.summary import LayerRow, format_summary, group_rows, summary, totals
from cnnlab.models import create_model


def by_name(rows: list[LayerRow]) -> dict[str, LayerRow]:
    return {r.name: r for r in rows}


@settings(max_examples=30, deadline=None)
@given(
    depth=st.integers(1, 6),  # D1
    filters=st.integers(1, 6),  # K
    kernel=st.integers(1, 5),  # F
    stride=st.integers(1, 3),  # S
    padding=st.integers(0, 2),  # P
    size=st.integers(5, 12),  # W1 = H1
)
def test_conv_params_and_macs_match_seed_002(
    depth: int, filters: int, kernel: int, stride: int, padding: int, size: int
) -> None:
    conv = nn.Conv2d(depth, filters, kernel, stride=stride, padding=padding)
    (row,) = summary(conv, (depth, size, size))
    side = (size - kernel + 2 * padding) // stride + 1  # W2 = H2
    assert row.output_shape == (filters, side, side)
    assert row.params == (kernel * kernel * depth + 1) * filters
    assert row.macs == kernel * kernel * depth * filters * side * side  # bias not counted
    assert row.flops == 2 * row.macs


def test_grouped_and_depthwise_convs_divide_macs_by_groups() -> None:
    rows = summary(
        nn.Sequential(nn.Conv2d(8, 16, 3, groups=4), nn.Conv2d(16, 16, 3, groups=16)), (8, 7, 7)
    )
    assert [r.macs for r in rows] == [3 * 3 * 2 * 16 * 5 * 5, 3 * 3 * 1 * 16 * 3 * 3]


def test_macs_match_pytorch_flop_counter_on_a_zoo_resnet() -> None:
    # FlopCounterMode counts 2 FLOPs per conv/matmul MAC and nothing else, like us.
    model = create_model("resnet_mini").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    rows = summary(model, (1, 28, 28))
    assert totals(rows, model)["flops"] == counter.get_total_flops() > 0


def test_lenet5_matches_seed_001_table() -> None:
    rows = by_name(summary(create_model("lenet5"), (1, 32, 32)))
    table = {
        "features.0": (6, 28, 28),  # C1
        "features.2": (6, 14, 14),  # S2
        "features.3": (16, 10, 10),  # C3
        "features.5": (16, 5, 5),  # S4
        "features.6": (120, 1, 1),  # C5
        "head.1": (84,),  # F6
        "head.3": (10,),  # output
    }
    assert {name: rows[name].output_shape for name in table} == table
    assert rows["features.0"].macs == 5 * 5 * 1 * 6 * 28 * 28


def test_alexnet_seed_matches_seed_001_table() -> None:
    with torch.device("meta"):  # shapes only
        model = create_model("alexnet_seed")
    rows = by_name(summary(model, (3, 227, 227)))
    table = {
        "features.0": (96, 55, 55),  # C1
        "features.3": (96, 27, 27),  # S2
        "features.4": (256, 27, 27),  # C3
        "features.7": (256, 13, 13),  # S4
        "features.8": (384, 13, 13),  # C5
        "features.10": (384, 13, 13),  # C6
        "features.12": (256, 13, 13),  # C7
    }
    assert {name: rows[name].output_shape for name in table} == table
    assert [rows[n].kind for n in table] == ["Conv2d", "MaxPool2d"] * 2 + ["Conv2d"] * 3


@pytest.mark.parametrize(
    ("name", "published"),
    [
        # torchvision ResNet50_Weights.IMAGENET1K_V1 meta "_ops": 4.089 (GMACs, 224x224).
        ("resnet50", 4.089e9),
        # torchvision VGG16_Weights.IMAGENET1K_V1 meta "_ops": 15.47 (GMACs, 224x224).
        ("vgg16", 15.47e9),
    ],
)
def test_macs_match_torchvision_published_ops(name: str, published: float) -> None:
    with torch.device("meta"):  # hooks only need shapes, so no arithmetic is done
        model = create_model(name)
    macs = totals(summary(model, (3, 224, 224)), model)["macs"]
    assert macs == pytest.approx(published, rel=0.02)


def rf_jump(model: nn.Module, shape: tuple[int, ...] = (1, 32, 32)) -> tuple[int, int]:
    last = summary(model, shape)[-1]
    return last.rf, last.jump


def test_receptive_field_of_stacked_convs_and_pools() -> None:
    # Seed 000 (VGG): two stacked 3x3 convs see 5x5, three see 7x7.
    assert rf_jump(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))) == (5, 1)
    assert rf_jump(nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(3)])) == (7, 1)
    # After a 2x2 stride-2 pool (rf 2, jump 2) a 3x3 conv adds (3 - 1) * 2.
    assert rf_jump(nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))) == (6, 2)
    assert rf_jump(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3, dilation=2))) == (
        3 + 2 * 2 * 2,
        2,
    )


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 3, padding=1)
        self.conv2 = nn.Conv2d(1, 1, 3, padding=1)
        self.shortcut = nn.Identity()
        self.after = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x)) + self.shortcut(x)  # the sum is unknown to hooks
        return self.after(out)


class Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(1, 1, k, padding=k // 2) for k in (1, 5, 3))
        self.merge = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([b(x) for b in self.branches], dim=1)
        return self.merge(out)


def test_branching_models_take_the_largest_branch_receptive_field() -> None:
    rows = by_name(summary(Residual(), (1, 8, 8)))
    assert (rows["shortcut"].rf, rows["conv2"].rf, rows["after"].rf) == (1, 5, 5)
    rows = by_name(summary(Inception(), (1, 8, 8)))
    assert [rows[f"branches.{i}"].rf for i in range(3)] == [1, 5, 3]
    assert rows["merge"].rf == 5 + 2


def test_memory_follows_seed_001_rule() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3), nn.Flatten(), nn.Linear(2, 5))
    rows = summary(model, (1, 5, 5))
    outputs = [r.activation_bytes for r in rows]
    assert outputs == [2 * 3 * 3 * 4, 2 * 4, 2 * 4, 5 * 4]  # fp32 output elements * 4
    t = totals(rows, model, batch_size=3)
    params = 2 * 9 + 2 + 2 * 5 + 5
    assert t["inference_activation_bytes"] == 3 * (72 + 8)  # largest neighbouring pair
    assert t["training_activation_bytes"] == 3 * (72 + 8 + 8 + 20)  # every output
    assert t["inference_bytes"] == 3 * 80 + 4 * params
    assert t["training_bytes"] == 3 * 108 + 4 * params * 4  # weights, grads, Adam m and v
    assert t["size_mb_bf16"] == pytest.approx(t["size_mb_fp32"] / 2)
    with pytest.raises(ValueError, match="batch_size=0"):
        totals(rows, model, batch_size=0)


def test_frozen_parameters_are_split_out() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(4, 3))
    model[0].requires_grad_(False)
    rows = summary(model, (1, 6, 6))
    assert [(r.trainable, r.frozen) for r in rows] == [(0, 20), (15, 0)]
    assert (totals(rows, model)["trainable"], totals(rows, model)["frozen"]) == (15, 20)


def test_depth_groups_rows_of_a_zoo_resnet() -> None:
    model = create_model("resnet_mini")
    rows = summary(model, (1, 28, 28))
    groups = group_rows(rows, model, depth=2)
    assert len(groups) < len(rows)
    assert sum(g.params for g in groups) == sum(r.params for r in rows)
    assert sum(g.macs for g in groups) == sum(r.macs for r in rows)
    assert groups[-1].output_shape == rows[-1].output_shape
    text = format_summary(rows, model, depth=1)
    assert text.count("\n") < format_summary(rows, model).count("\n")


def test_cli_json_has_rows_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "lenet5", "--json", "--batch-size", "4", "--depth", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in report["rows"]] == ["features", "head"]
    assert report["totals"]["params"] == 61_706
    assert report["totals"]["batch_size"] == 4
    assert report["totals"]["macs"] == 4 * sum(r["macs"] for r in report["rows"])
    assert main(["summary", "lenet5", "--depth", "0"]) == 2
