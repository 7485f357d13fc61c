"""A run's history: one row per epoch, as CSV and as the line printed after each epoch."""

from __future__ import annotations

import csv
import io
from typing import Any

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "images_per_second",
)  # fmt: skip  (a classifier's columns; other tasks name their own metrics)


def history_csv(history: list[dict[str, float]]) -> str:
    """The history as CSV text, one row per epoch.

    A classifier's columns are HISTORY_FIELDS; other tasks' metric columns take the
    place of the accuracies, in the order the rows first name them.
    """
    fields = list(HISTORY_FIELDS)
    seen = [key for row in history for key in row]
    if seen and not set(seen) <= set(HISTORY_FIELDS):
        fields = list(dict.fromkeys(seen))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def epoch_line(row: dict[str, float], epochs: int) -> str:
    line = f"epoch {int(row['epoch'])}/{epochs}  loss {row['train_loss']:.4f}"
    line += "".join(f"  {_short(k[6:])} {v:.4f}" for k, v in row.items() if _shown(k, "train_"))
    if "val_loss" in row:
        line += f"  val_loss {row['val_loss']:.4f}"
        line += "".join(
            f"  val_{_short(k[4:])} {v:.4f}" for k, v in row.items() if _shown(k, "val_")
        )
    return (
        line + f"  lr {row['lr']:.3g}  {row['seconds']:.1f}s  {row['images_per_second']:.0f} img/s"
    )


def _shown(key: str, prefix: str) -> bool:
    return key.startswith(prefix) and key != f"{prefix}loss"


def _short(metric: str) -> str:
    return "acc" if metric == "accuracy" else metric


def is_scalar(value: Any) -> bool:
    """History columns hold numbers; per-class lists stay in metrics.json."""
    return isinstance(value, int | float) and not isinstance(value, bool)
