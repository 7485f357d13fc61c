"""IDX and CIFAR-binary readers against files built byte by byte in the tests."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cnnlab import data
from cnnlab.core.errors import ChecksumError, ConfigError
from cnnlab.data import download, sources
from cnnlab.data.readers import DataFormatError, read_cifar_archive, read_idx

# -- IDX --------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_byte: int) -> bytes:
    """The IDX layout: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    return header + big_endian.tobytes()


@pytest.mark.parametrize(
    ("dtype", "type_byte"),
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D)],
)
@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, dtype: type, type_byte: int, gz: bool) -> None:
    low = 0 if dtype == np.uint8 else -100
    array: np.ndarray = np.random.default_rng(0).integers(low, 100, size=(5, 4, 3)).astype(dtype)
    if dtype == np.float32:
        array = (array / 7).astype(np.float32)  # fractions survive the big-endian round trip
    raw = idx_bytes(array, type_byte)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)

    got = read_idx(path)
    assert got.shape == (5, 4, 3)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, array)


def test_idx_labels_vector(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 3, 1, 4, 1])))
    assert read_idx(path).tolist() == [3, 1, 4, 1]


@pytest.mark.parametrize("change", [-5, +3])  # truncated, padded
def test_wrong_size_idx_names_the_file_and_sizes(tmp_path: Path, change: int) -> None:
    raw = idx_bytes(np.zeros((10, 28, 28), np.uint8), 0x08)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:change] if change < 0 else raw + b"\0" * change))
    with pytest.raises(DataFormatError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message
    assert "(10, 28, 28)" in message and f"received {len(raw) + change} bytes" in message


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        (b"\x1f\x8b\x08\x00junk", "not a valid gzip file"),
        (b"PK\x03\x04", None),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]), "type byte 0x42"),
    ],
)
def test_bad_idx_files(tmp_path: Path, blob: bytes, expected: str | None) -> None:
    path = tmp_path / ("bad.gz" if blob.startswith(b"\x1f\x8b") else "bad.idx")
    path.write_bytes(blob)
    with pytest.raises(DataFormatError, match=expected or "expected an IDX file") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


# -- CIFAR binary -----------------------------------------------------------------------


def cifar_records(labels: list[list[int]], seed: int) -> tuple[bytes, np.ndarray]:
    """Records of len(labels[i]) label bytes + 3072 pixel bytes; returns bytes and pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    blob = b"".join(bytes(lab) + pixels[i].tobytes() for i, lab in enumerate(labels))
    return blob, pixels


def write_tar_gz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def fake_cifar10(path: Path) -> tuple[list[int], np.ndarray, list[int], np.ndarray]:
    members, train_labels, train_pixels = {}, [], []
    for b in range(1, 6):
        labels = [(b + i) % 10 for i in range(3)]
        blob, pixels = cifar_records([[x] for x in labels], seed=b)
        members[f"cifar-10-batches-bin/data_batch_{b}.bin"] = blob
        train_labels += labels
        train_pixels.append(pixels)
    test_blob, test_pixels = cifar_records([[9], [0]], seed=99)
    members["cifar-10-batches-bin/test_batch.bin"] = test_blob
    members["cifar-10-batches-bin/batches.meta.txt"] = (
        "\n".join(sources.CIFAR10.classes).encode() + b"\n\n"
    )
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    write_tar_gz(path, members)
    return train_labels, np.concatenate(train_pixels), [9, 0], test_pixels


def test_cifar10_reader_matches_the_bytes_written(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-binary.tar.gz"
    y_train, px_train, y_test, px_test = fake_cifar10(archive)
    batches = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    splits = read_cifar_archive(
        archive,
        batches,
        ["cifar-10-batches-bin/test_batch.bin"],
        1,
        0,
        "cifar-10-batches-bin/batches.meta.txt",
    )
    assert splits.x_train.shape == (15, 3, 32, 32) and splits.x_train.dtype == np.uint8
    assert splits.y_train.tolist() == y_train and splits.y_test.tolist() == y_test
    # Pixel byte c*1024 + row*32 + col of a record is channel c, row, col.
    assert splits.x_train[4, 1, 2, 3] == px_train[4, 1024 + 2 * 32 + 3]
    np.testing.assert_array_equal(splits.x_test.reshape(2, -1), px_test)
    assert splits.classes == list(sources.CIFAR10.classes)


def test_cifar100_two_label_bytes(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-100-binary.tar.gz"
    train_blob, train_px = cifar_records([[1, 11], [19, 99], [0, 0]], seed=1)
    test_blob, _ = cifar_records([[3, 42]], seed=2)
    fine = "\n".join(sources.CIFAR100_FINE).encode()
    write_tar_gz(
        archive,
        {
            "cifar-100-binary/train.bin": train_blob,
            "cifar-100-binary/test.bin": test_blob,
            "cifar-100-binary/fine_label_names.txt": fine,
        },
    )
    members = (["cifar-100-binary/train.bin"], ["cifar-100-binary/test.bin"])
    fine_split = read_cifar_archive(
        archive, *members, 2, 1, "cifar-100-binary/fine_label_names.txt"
    )
    coarse_split = read_cifar_archive(archive, *members, 2, 0)
    assert fine_split.y_train.tolist() == [11, 99, 0] and fine_split.y_test.tolist() == [42]
    assert coarse_split.y_train.tolist() == [1, 19, 0] and coarse_split.classes == []
    np.testing.assert_array_equal(fine_split.x_train.reshape(3, -1), train_px)
    assert fine_split.classes[99] == "worm" and len(fine_split.classes) == 100


def test_cifar_missing_member_and_bad_record_size(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    write_tar_gz(archive, {"cifar-100-binary/train.bin": b"\x00" * 3075})
    with pytest.raises(DataFormatError, match=r"expected members cifar-100-binary/test\.bin"):
        read_cifar_archive(
            archive, ["cifar-100-binary/train.bin"], ["cifar-100-binary/test.bin"], 2, 1
        )
    with pytest.raises(DataFormatError, match=r"3074-byte records, received 3075 bytes"):
        read_cifar_archive(
            archive, ["cifar-100-binary/train.bin"], ["cifar-100-binary/train.bin"], 2, 1
        )


def test_load_cifar10_through_cache_and_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cifar10"
    folder.mkdir()
    archive = folder / "cifar-10-binary.tar.gz"
    y_train, _, _, _ = fake_cifar10(archive)

    # The real table entry: the fake archive is refused by its size before any hashing.
    with pytest.raises(ChecksumError, match=r"expected 170052171 bytes"):
        data.load("cifar10", cache_dir=tmp_path, system_dirs=(), download=False)

    digest = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = sources.RemoteFile("cifar-10-binary.tar.gz", digests=(digest,))
    monkeypatch.setitem(
        sources.SOURCES, "cifar10", dataclasses.replace(sources.CIFAR10, files=(spec,))
    )
    ds = data.load("cifar10", cache_dir=tmp_path, system_dirs=(), download=False)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.y_train.tolist() == y_train
    assert ds.classes[0] == "airplane" and ds.source == str(folder)


def test_cifar100_rejects_bad_label_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar100"
    folder.mkdir()
    archive = folder / "cifar-100-binary.tar.gz"
    blob, _ = cifar_records([[2, 7]], seed=0)
    write_tar_gz(archive, {"cifar-100-binary/train.bin": blob, "cifar-100-binary/test.bin": blob})
    digest = "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
    spec = sources.RemoteFile("cifar-100-binary.tar.gz", digests=(digest,))
    monkeypatch.setitem(
        sources.SOURCES, "cifar100", dataclasses.replace(sources.CIFAR100, files=(spec,))
    )
    ds = data.load("cifar100", cache_dir=tmp_path, system_dirs=(), download=False, label="coarse")
    assert ds.y_train.tolist() == [2] and ds.classes == list(sources.CIFAR100_COARSE)
    assert data.load("cifar100", cache_dir=tmp_path, system_dirs=()).y_test.tolist() == [7]
    with pytest.raises(ConfigError, match=r"label='super'; expected 'fine' or 'coarse'"):
        data.load("cifar100", cache_dir=tmp_path, system_dirs=(), label="super")


# -- digests ----------------------------------------------------------------------------


def test_md5_and_sha256_digests_and_syntax(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"cnnlab")
    md5 = "md5:" + hashlib.md5(b"cnnlab").hexdigest()
    sha = "sha256:" + hashlib.sha256(b"cnnlab").hexdigest()
    assert download.verify_file(path, sources.RemoteFile("f.bin", (md5,))) == md5
    assert download.verify_file(path, sources.RemoteFile("f.bin", ("md5:" + "0" * 32, sha))) == sha
    with pytest.raises(ChecksumError, match=rf"expected md5:0{{32}}, received {md5}"):
        download.verify_file(path, sources.RemoteFile("f.bin", ("md5:" + "0" * 32,)))
    with pytest.raises(ChecksumError, match=r"expected 7 bytes, received 6 bytes"):
        download.verify_file(path, sources.RemoteFile("f.bin", (md5,), size=7))
    download.check_digest_syntax(sha)
    with pytest.raises(ConfigError, match="expected 'md5:<32 hex>'"):
        download.check_digest_syntax("sha1:abc")


def test_every_table_digest_is_well_formed() -> None:
    for source in sources.SOURCES.values():
        for spec in source.files:
            for digest in spec.digests + spec.content_digests:
                download.check_digest_syntax(digest)
