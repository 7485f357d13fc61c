"""Atomic file writes and safetensors files that carry their own integrity check."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cnnlab.core.errors import CheckpointError

_DIGEST_KEY = "cnnlab.sha256"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temp file beside ``path``; on success fsync it and rename it over ``path``.

    A crash or Ctrl-C at any moment leaves either the old file or the new one,
    never a half-written one, and no temp file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a normal file respects umask
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk (POSIX).
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(payload)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Write ``tensors`` as safetensors with ``metadata`` and a SHA-256 of the data, atomically."""
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {**metadata, _DIGEST_KEY: _digest(plain)}
    blob = st_save(plain, metadata=meta)
    with atomic_open(path, "wb") as f:
        f.write(blob)


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a file written by :func:`save_tensors`, checking it is complete and untampered.

    Raises:
        CheckpointError: the file is missing, truncated, not safetensors, or its
            data does not match the digest stored in it.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    try:
        tensors = st_load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path}: not a complete safetensors file ({len(blob)} bytes; {e}); "
            "it may be truncated or not a cnnlab file"
        ) from None
    metadata: dict[str, str] = header.get("__metadata__") or {}
    stored = metadata.pop(_DIGEST_KEY, None)
    if stored is None:
        raise CheckpointError(f"{path}: no {_DIGEST_KEY} entry; expected a file saved by cnnlab")
    actual = _digest(tensors)
    if actual != stored:
        raise CheckpointError(
            f"{path}: data does not match its checksum (stored sha256 {stored[:12]}..., "
            f"computed {actual[:12]}...); the file was modified or corrupted"
        )
    return tensors, metadata
