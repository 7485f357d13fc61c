"""Evaluation views against scikit-learn oracles and hand-built matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.inspect.evaluation import (
    NAME_CHARS,
    confusion_matrix,
    confusion_png,
    format_report,
    format_topk_table,
    mistakes_grid,
    most_confused,
    normalise,
    per_class_report,
    topk_table,
    worst_mistakes,
)

CLASSES = ["cat", "dog", "hawk", "kite"]


def _random_labels(n: int = 200, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y_true = torch.randint(0, k, (n,), generator=g)
    # Mostly right, so the matrix is not uniform; class 3 is never predicted.
    y_pred = torch.where(
        torch.rand(n, generator=g) < 0.6, y_true, torch.randint(0, k, (n,), generator=g)
    )
    y_pred = torch.where(y_pred == 3, torch.zeros_like(y_pred), y_pred)
    return y_true, y_pred


def test_confusion_matrix_matches_sklearn() -> None:
    y_true, y_pred = _random_labels()
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm.dtype == torch.int64
    expected = sk_confusion_matrix(y_true.numpy(), y_pred.numpy(), labels=range(4))
    np.testing.assert_array_equal(cm.numpy(), expected)


def test_confusion_matrix_rejects_bad_labels() -> None:
    with pytest.raises(ConfigError, match=r"received values 0\.\.4"):
        confusion_matrix([0, 4], [0, 1], 4)
    with pytest.raises(ShapeMismatchError):
        confusion_matrix([0, 1], [0], 4)


def test_per_class_report_matches_sklearn() -> None:
    y_true, y_pred = _random_labels()
    report = per_class_report(confusion_matrix(y_true, y_pred, 4), CLASSES)
    p, r, f, s = precision_recall_fscore_support(
        y_true.numpy(), y_pred.numpy(), labels=range(4), zero_division=0
    )
    assert [row["class"] for row in report] == CLASSES
    np.testing.assert_allclose([row["precision"] for row in report], p)
    np.testing.assert_allclose([row["recall"] for row in report], r)
    np.testing.assert_allclose([row["f1"] for row in report], f)
    assert [row["support"] for row in report] == s.tolist()
    assert report[3]["precision"] == 0.0  # never predicted: zero division gives 0.0


@pytest.mark.parametrize(("by", "dim"), [("true", 1), ("pred", 0), ("all", None)])
def test_normalise_sums_to_one(by: str, dim: int | None) -> None:
    cm = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    rates = normalise(cm, by)  # type: ignore[arg-type]
    if dim is None:
        assert float(rates.sum()) == pytest.approx(1.0)
    else:
        sums = rates.sum(dim=dim)
        np.testing.assert_allclose(sums[:2].numpy(), 1.0)
        assert float(sums[2]) == 0.0  # empty row/column stays 0, not NaN


def test_normalise_rejects_unknown() -> None:
    with pytest.raises(ConfigError, match="'rows'"):
        normalise(torch.eye(2), "rows")  # type: ignore[arg-type]


def test_most_confused_hand_built() -> None:
    cm = torch.tensor([[9, 1, 4], [0, 8, 7], [2, 0, 5]])
    names = ["a", "b", "c"]
    assert most_confused(cm, names, k=3) == [("b", "c", 7), ("a", "c", 4), ("c", "a", 2)]
    assert len(most_confused(cm, names, k=10)) == 4  # zero cells are left out


def test_worst_mistakes_ordering() -> None:
    probs = torch.tensor(
        [
            [0.9, 0.05, 0.05],  # right
            [0.2, 0.7, 0.1],  # wrong, 0.7
            [0.15, 0.05, 0.8],  # wrong, 0.8
            [0.5, 0.4, 0.1],  # wrong, 0.5
            [0.1, 0.6, 0.3],  # right
        ]
    )
    y_true = torch.tensor([0, 0, 1, 2, 1])
    mistakes = worst_mistakes(probs, y_true, k=2)
    assert [m["index"] for m in mistakes] == [2, 1]
    assert mistakes[0]["true"] == 1 and mistakes[0]["pred"] == 2
    assert mistakes[0]["confidence"] == pytest.approx(0.8)
    assert [i for i, _ in mistakes[0]["top3"]] == [2, 0, 1]
    assert mistakes[0]["top3"][1][1] == pytest.approx(0.15)
    assert [m["index"] for m in worst_mistakes(probs, y_true)] == [2, 1, 3]


def test_topk_table_and_format() -> None:
    row = torch.tensor([0.05, 0.12, 0.83, 0.0])
    assert topk_table(row, CLASSES) == [
        ("hawk", pytest.approx(0.83)),
        ("dog", pytest.approx(0.12)),
        ("cat", pytest.approx(0.05)),
    ]
    text = format_topk_table(row, CLASSES, true_label=3)
    lines = text.splitlines()
    assert lines[0] == "true: kite"
    assert "hawk" in lines[1] and "0.83" in lines[1]
    assert "dog" in lines[2] and "0.12" in lines[2]
    assert len(lines) == 4


def test_format_report_lists_classes() -> None:
    cm = torch.tensor([[3, 1], [0, 4]])
    text = format_report(cm, ["left", "right"])
    assert "left" in text and "right" in text
    assert "accuracy 0.875 on 8 samples" in text


def _read_png(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        return img


@pytest.mark.parametrize(("names", "margin"), [(CLASSES, 6 * NAME_CHARS + 8), (None, 0)])
def test_confusion_png(tmp_path: Path, names: list[str] | None, margin: int) -> None:
    cm = torch.tensor([[5, 1, 0, 0], [2, 3, 0, 1], [0, 0, 4, 0], [1, 0, 0, 6]])
    out = confusion_png(cm, names, tmp_path / "cm.png", cell=30)
    img = _read_png(out)
    assert img.size == (margin + 4 * 30, margin + 4 * 30)
    pixels = np.asarray(img.convert("RGB"))
    # The (3, 3) cell (largest rate) is darker than the empty (0, 3) cell.
    dark = pixels[margin + 3 * 30 + 2, margin + 3 * 30 + 25]
    light = pixels[margin + 2, margin + 3 * 30 + 25]
    assert dark.sum() < light.sum()
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]  # no temp file left


def test_mistakes_grid(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    mistakes = [{"index": 4}, {"index": 0}, {"index": 2}, {"index": 1}]
    img = _read_png(mistakes_grid(images, mistakes, tmp_path / "m.png"))
    assert img.size == (2 * (2 * 7 - 1), 2 * (2 * 7 - 1))  # 2x2 tiles, pad 1, scale 2
    pixels = np.asarray(img)
    np.testing.assert_array_equal(pixels[:12:2, :12:2], images[4].permute(1, 2, 0).numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]
