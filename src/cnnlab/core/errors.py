"""Typed errors: each one names what was received and what was expected."""

from __future__ import annotations

from collections.abc import Iterable


class CnnlabError(Exception):
    """Base class of every error cnnlab raises on purpose."""


class UnknownNameError(CnnlabError, KeyError):
    """A model, dataset, optimizer, ... name that is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; expected one of: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class DatasetUnavailableError(CnnlabError):
    """No local copy of a dataset and no way to download it."""


class DataFormatError(CnnlabError, ValueError):
    """A data file whose bytes or layout are not what its format requires."""


class ChecksumError(CnnlabError):
    """A downloaded or cached file does not match its published checksum."""


class CheckpointError(CnnlabError):
    """A checkpoint or saved model that is missing, truncated or tampered with."""


class ShapeMismatchError(CnnlabError, ValueError):
    """An input whose shape does not fit the model or layer."""


class TrainingDivergedError(CnnlabError):
    """The loss became NaN or infinite."""


class ConfigError(CnnlabError, ValueError):
    """A configuration value of the wrong type or outside its range."""


class WeightsError(CnnlabError, ValueError):
    """Weights whose names, shapes or layout do not fit the model they are loaded into."""
