"""Reading config values: flags and YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.engine.config import TrainConfig, yaml_value


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-4", 1e-4), ("5e-4", 5e-4), ("0.1", 0.1), ("3", 3), ("5m", "5m"), ("null", None), ("none", "none"),
     ("fashion-mnist", "fashion-mnist"), ("[1, 2]", [1, 2])],
)  # fmt: skip
def test_flag_values_read_1e_minus_4_as_a_number(text: str, value: object) -> None:
    assert yaml_value(text) == value


def test_a_yaml_file_reads_1e_minus_4_as_a_number(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("weight_decay: 1e-4\nlr: 2e-2\nname: e2e\n")
    config = TrainConfig.from_yaml(path)
    assert (config.weight_decay, config.lr, config.name) == (1e-4, 2e-2, "e2e")
