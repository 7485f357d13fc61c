"""Readers for dataset file formats: IDX (gzipped or not), CIFAR binary archives, npz, digits."""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.core.errors import DataFormatError

# IDX type byte -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/, bottom of page).
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
CIFAR_PIXELS = 3 * 32 * 32  # one record holds the R, G and B planes, 32x32 each, row-major
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class Splits(NamedTuple):
    """What every reader returns: uint8 (N, C, H, W) images, int64 labels, class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]


def read_bytes(path: Path) -> bytes:
    """Read a file, gunzipping it when its name ends in ``.gz``.

    Raises:
        DataFormatError: the gzip stream is truncated or corrupt.
    """
    data = Path(path).read_bytes()
    if not str(path).endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DataFormatError(f"{path}: not a valid gzip file ({error})") from error


def parse_idx(data: bytes, label: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of one IDX file into an array of its declared type and shape.

    Args:
        data: the uncompressed file.
        label: file name used in error messages.

    Raises:
        DataFormatError: bad magic number, unknown type byte, or a size that does not
            match the dimensions in the header (a truncated file).
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFormatError(
            f"{label}: expected an IDX file starting with bytes 00 00, "
            f"received {data[:4].hex(' ')!r}"
        )
    type_byte, ndim = data[2], data[3]
    if type_byte not in IDX_DTYPES:
        valid = ", ".join(f"0x{t:02X}" for t in IDX_DTYPES)
        raise DataFormatError(f"{label}: IDX type byte 0x{type_byte:02X}; expected one of {valid}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(
            f"{label}: truncated IDX header; expected {header} bytes, received {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_byte])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(
            f"{label}: IDX header says shape {shape} of {dtype.name} ({expected} bytes), "
            f"received {len(data)} bytes (truncated or padded file)"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native order, and a writable copy


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed) into a NumPy array.

    Raises:
        DataFormatError: the file is not valid IDX; the message names the file.
    """
    return parse_idx(read_bytes(path), label=str(path))


def _tar_members(archive: Path, wanted: Sequence[str]) -> dict[str, bytes]:
    """Read the named regular-file members of a tar.gz in one pass, without extracting."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # one sequential pass: no seeking back in the gzip stream
                if member.name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found[member.name] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataFormatError(f"{archive}: not a readable tar.gz archive ({error})") from error
    return found


def read_cifar_records(
    data: bytes, label_bytes: int, label_index: int, label: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray]:
    """Split CIFAR binary records into images (N, 3, 32, 32) uint8 and labels (N,) int64.

    Args:
        data: concatenated records of ``label_bytes`` label bytes then 3072 pixel bytes.
        label_bytes: 1 for CIFAR-10; 2 for CIFAR-100 (coarse, then fine).
        label_index: which label byte to return (CIFAR-100: 0 coarse, 1 fine).
        label: file name used in error messages.

    Raises:
        DataFormatError: the byte count is not a whole number of records.
    """
    record = label_bytes + CIFAR_PIXELS
    if len(data) == 0 or len(data) % record:
        raise DataFormatError(
            f"{label}: expected a whole number of {record}-byte records, received "
            f"{len(data)} bytes ({len(data) / record:.3f} records)"
        )
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    labels = rows[:, label_index].astype(np.int64)
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy()  # planes R, G, B: already CHW
    return images, labels


def read_cifar_archive(
    archive: Path,
    train_members: Sequence[str],
    test_members: Sequence[str],
    label_bytes: int,
    label_index: int,
    names_member: str | None = None,
) -> Splits:
    """Read a CIFAR binary ``.tar.gz`` (never the pickled python version).

    Args:
        archive: path of ``cifar-10-binary.tar.gz`` or ``cifar-100-binary.tar.gz``.
        train_members: member names of the training batches, in order.
        test_members: member names of the test batches.
        label_bytes: label bytes per record (1 for CIFAR-10, 2 for CIFAR-100).
        label_index: which label byte to use.
        names_member: optional member holding one class name per line.

    Returns:
        The splits; ``classes`` holds the names in ``names_member``, or is empty when the
        archive has no such member.

    Raises:
        DataFormatError: a member is missing or has a bad size; the message lists them.
    """
    wanted = [*train_members, *test_members] + ([names_member] if names_member else [])
    found = _tar_members(archive, wanted)
    missing = [m for m in [*train_members, *test_members] if m not in found]
    if missing:
        raise DataFormatError(
            f"{archive}: expected members {', '.join(missing)}; "
            f"found only {', '.join(sorted(found)) or 'none of them'}"
        )

    def split(members: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [
            read_cifar_records(found[m], label_bytes, label_index, f"{archive}:{m}")
            for m in members
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    x_train, y_train = split(train_members)
    x_test, y_test = split(test_members)
    names: list[str] = []
    if names_member and names_member in found:
        names = [line.strip() for line in found[names_member].decode().splitlines() if line.strip()]
    return Splits(x_train, y_train, x_test, y_test, names)


def images_to_uint8(x: np.ndarray, label: str) -> np.ndarray:
    """Convert uint8, integer 0..255 or float 0..1 images to uint8.

    Raises:
        DataFormatError: values outside the range of their type.
    """
    if x.dtype == np.uint8:
        return x
    if x.size == 0:
        return x.astype(np.uint8)
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.floating):
        if lo < 0.0 or hi > 1.0 or not np.isfinite([lo, hi]).all():
            raise DataFormatError(
                f"{label}: float images must lie in [0, 1]; received values in [{lo:g}, {hi:g}]"
            )
        return np.rint(x * 255.0).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer) and lo >= 0 and hi <= 255:
        return x.astype(np.uint8)
    raise DataFormatError(
        f"{label}: expected uint8, integers in 0..255 or floats in [0, 1]; "
        f"received dtype={x.dtype} with values in [{lo:g}, {hi:g}]"
    )


def to_nchw(x: np.ndarray, layout: str, label: str) -> np.ndarray:
    """Bring NHW, NHWC or NCHW images to NCHW.

    Args:
        x: the images.
        layout: ``"auto"``, ``"NCHW"`` or ``"NHWC"``; auto reads a 4-D array as NHWC when
            only its last axis looks like channels (1, 3 or 4), else as NCHW.
        label: name used in error messages.

    Raises:
        DataFormatError: not 3-D or 4-D, or the layout cannot be told apart.
    """
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataFormatError(
            f"{label}: expected images shaped (N, H, W), (N, H, W, C) or (N, C, H, W); "
            f"received shape {x.shape}"
        )
    channel_like = (1, 3, 4)
    if layout == "auto":
        if x.shape[3] in channel_like and x.shape[1] not in channel_like:
            layout = "NHWC"
        elif x.shape[1] in channel_like:
            layout = "NCHW"
        else:
            raise DataFormatError(
                f"{label}: cannot tell the channel axis of shape {x.shape}; expected 1, 3 or 4 "
                "channels on axis 1 (NCHW) or axis 3 (NHWC); pass layout='NCHW' or 'NHWC'"
            )
    if layout == "NHWC":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if layout == "NCHW":
        return x
    raise DataFormatError(f"layout={layout!r}; expected 'auto', 'NCHW' or 'NHWC'")


def _labels(y: np.ndarray, n: int, label: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise DataFormatError(
            f"{label}: expected integer labels shaped ({n},), received dtype={y.dtype} "
            f"shape={y.shape}"
        )
    if n and y.min() < 0:
        raise DataFormatError(f"{label}: labels must be >= 0, received minimum {y.min()}")
    return y.astype(np.int64)


def read_npz(path: Path, layout: str = "auto") -> Splits:
    """Read x_train, y_train, x_test, y_test (and optional classes) from an ``.npz`` file.

    Images may be NHW, NHWC or NCHW, uint8 or float in [0, 1]. Object arrays are refused
    (``allow_pickle=False``): an npz never runs code.

    Returns:
        uint8 NCHW train/test images, int64 labels, and class names (the ``classes``
        array, else "0", "1", ... up to the largest label).

    Raises:
        DataFormatError: missing keys or bad shapes; the message lists what was received.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as error:
        raise DataFormatError(f"{path}: not a readable .npz file ({error})") from error
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        received = ", ".join(f"{k}{arrays[k].shape}" for k in arrays) or "no arrays"
        raise DataFormatError(
            f"{path}: expected keys {', '.join(NPZ_KEYS)} (and optional classes); "
            f"missing {', '.join(missing)}; received {received}"
        )
    xs, ys = [], []
    for split in ("train", "test"):
        x = images_to_uint8(
            to_nchw(arrays[f"x_{split}"], layout, f"{path}: x_{split}"), f"{path}: x_{split}"
        )
        xs.append(np.ascontiguousarray(x))
        ys.append(_labels(arrays[f"y_{split}"], len(x), f"{path}: y_{split}"))
    top = max((int(y.max()) for y in ys if len(y)), default=-1)
    if "classes" in arrays:
        classes = [str(c) for c in arrays["classes"].reshape(-1)]
        if len(classes) <= top:
            raise DataFormatError(
                f"{path}: classes has {len(classes)} names but labels go up to {top}"
            )
    else:
        classes = [str(i) for i in range(top + 1)]
    return Splits(xs[0], ys[0], xs[1], ys[1], classes)


def read_digits(seed: int = 0, test_size: int = 360) -> Splits:
    """scikit-learn's 8x8 digits as uint8 (values 0..16 scaled by 255/16, rounded).

    The split is stratified by class and fixed by ``seed``: 1,437 train / 360 test by default.

    Returns:
        The splits; images are (N, 1, 8, 8) and classes "0" to "9".
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=test_size, stratify=labels, random_state=seed)
    train, test = np.sort(train), np.sort(test)  # keep the file order inside each split
    classes = [str(d) for d in range(10)]
    return Splits(images[train], labels[train], images[test], labels[test], classes)
