"""Fashion-MNIST from Debian's dataset-fashion-mnist folder: shapes, labels, checksums, stamps."""

from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path

import pytest
import torch

from cnnlab import data
from cnnlab.core.errors import ChecksumError
from cnnlab.data import download
from cnnlab.data.__main__ import main
from cnnlab.data.sources import FASHION_MNIST

SYSTEM = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not SYSTEM.is_dir(),
    reason=f"{SYSTEM} is missing: sudo apt-get install dataset-fashion-mnist",
)
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def test_loads_from_system_folder(tmp_path: Path) -> None:
    start = time.perf_counter()
    ds = data.load("fashion-mnist", cache_dir=tmp_path)
    seconds = time.perf_counter() - start

    assert ds.x_train.shape == (60000, 1, 28, 28)
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.y_train.bincount().tolist() == [6000] * 10
    assert ds.y_test.bincount().tolist() == [1000] * 10
    assert ds.classes == CLASSES
    assert ds.source == str(SYSTEM)
    assert int(ds.x_train.max()) == 255 and int(ds.x_train.min()) == 0
    assert seconds < 10, f"loading took {seconds:.1f} s; expected about 1 s"


def test_first_image_matches_the_raw_idx_bytes(tmp_path: Path) -> None:
    ds = data.load("fashion-mnist", cache_dir=tmp_path)
    raw = gzip.decompress((SYSTEM / "train-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((SYSTEM / "train-labels-idx1-ubyte.gz").read_bytes())
    first = torch.frombuffer(bytearray(raw[16 : 16 + 784]), dtype=torch.uint8).view(28, 28)
    assert torch.equal(ds.x_train[0, 0], first)
    assert int(ds.y_train[-1]) == labels[-1]


def test_debian_files_match_published_raw_md5_and_recorded_sha256() -> None:
    for spec in FASHION_MNIST.files:
        path = SYSTEM / spec.name
        raw_md5 = "md5:" + hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest()
        sha256 = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        assert raw_md5 in spec.content_digests
        assert sha256 in spec.digests
        assert download.verify_file(path, spec) == sha256


def test_second_load_trusts_the_stamp_and_skips_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.load("fashion-mnist", cache_dir=tmp_path)
    assert (tmp_path / "fashion-mnist" / download.STAMP_FILE).is_file()

    def no_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("full checksum ran again")

    monkeypatch.setattr(download, "verify_file", no_hashing)
    assert len(data.load("fashion-mnist", cache_dir=tmp_path).x_train) == 60000


def test_recompressed_copy_is_accepted_by_its_content_digest(tmp_path: Path) -> None:
    spec = FASHION_MNIST.files[3]  # t10k labels: small
    copy = tmp_path / spec.name
    copy.write_bytes(gzip.compress(gzip.decompress((SYSTEM / spec.name).read_bytes()), 1, mtime=0))
    assert download.verify_file(copy, spec) == spec.content_digests[0]

    payload = bytearray(gzip.decompress(copy.read_bytes()))
    payload[100] ^= 0xFF  # same size inside, different label
    copy.write_bytes(gzip.compress(bytes(payload), 1, mtime=0))
    with pytest.raises(ChecksumError, match=r"gunzipped: expected md5:15d48437"):
        download.verify_file(copy, spec)


def test_cli_check_and_fetch_find_the_system_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "fashion-mnist", "--cache-dir", str(tmp_path)]) == 0
    assert main(["fetch", "fashion-mnist", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(SYSTEM), str(SYSTEM)]
    assert main(["check", "fashion-mnist", "--cache-dir", str(tmp_path), "--no-system-dirs"]) == 1
