"""RunDir: every file of a run folder, named once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    """The files of ``runs/<name>/`` (and of a saved model folder, which is a subset).

    Attributes are paths; nothing is created until a writer writes one.
    """

    root: Path

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> RunDir:
        return cls(Path(path))

    @property
    def config_yaml(self) -> Path:
        """The resolved training config (TrainConfig as YAML)."""
        return self.root / "config.yaml"

    @property
    def checkpoint(self) -> Path:
        """Model, optimizer, schedule, RNG and epoch state, rewritten after every epoch."""
        return self.root / "checkpoint.safetensors"

    @property
    def history(self) -> Path:
        """One CSV row per epoch: losses, metrics, lr, seconds, images/second."""
        return self.root / "history.csv"

    @property
    def cpu_settings(self) -> Path:
        """The channels_last / bf16 / compile choice and why it was made."""
        return self.root / "cpu_settings.json"

    @property
    def budget(self) -> Path:
        """A time-budgeted run's plan: the measured rates and the steps chosen."""
        return self.root / "budget.json"

    @property
    def model_config(self) -> Path:
        """The saved model's ModelRecord (cnnlab.core.records)."""
        return self.root / "config.json"

    @property
    def weights(self) -> Path:
        """The saved model's tensors."""
        return self.root / "model.safetensors"

    @property
    def metrics(self) -> Path:
        """Test metrics and timings of the finished run."""
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        """The offline HTML report."""
        return self.root / "report.html"

    def member(self, index: int) -> RunDir:
        """The run folder of ensemble member ``index`` inside this one."""
        return RunDir(self.root / f"member-{index}")
