"""Downloads for real, from an http.server on 127.0.0.1 serving copies of Fashion-MNIST."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cnnlab import data
from cnnlab.core.errors import ChecksumError, DatasetUnavailableError
from cnnlab.data import download
from cnnlab.data.__main__ import main
from cnnlab.data.sources import FASHION_MNIST

SYSTEM = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not SYSTEM.is_dir(),
        reason=f"{SYSTEM} is missing (served as the test's download source): "
        "sudo apt-get install dataset-fashion-mnist",
    ),
]
NAMES = [spec.name for spec in FASHION_MNIST.files]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (free port) in a thread; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "server"
    folder.mkdir()
    for name in NAMES:
        shutil.copyfile(SYSTEM / name, folder / name)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def test_download_then_load_from_cache_with_server_gone(tmp_path: Path, served: Path) -> None:
    cache = tmp_path / "cache"
    with serve(served) as url:
        ds = data.load("fashion-mnist", cache_dir=cache, system_dirs=(), mirror=url)
    assert ds.x_train.shape == (60000, 1, 28, 28)
    assert ds.source == str(cache / "fashion-mnist")
    folder = cache / "fashion-mnist"
    for name in NAMES:
        assert (folder / name).read_bytes() == (SYSTEM / name).read_bytes()
    assert cache_files(cache) == sorted(
        [f"fashion-mnist/{n}" for n in NAMES] + [f"fashion-mnist/{download.STAMP_FILE}"]
    )

    again = data.load(
        "fashion-mnist", cache_dir=cache, system_dirs=(), mirror=url
    )  # server stopped
    assert again.y_test.tolist() == ds.y_test.tolist()
    assert again.source == ds.source


def test_corrupt_download_raises_and_leaves_nothing(tmp_path: Path, served: Path) -> None:
    target = served / NAMES[0]  # downloaded first
    blob = bytearray(target.read_bytes())
    for i in range(1000, 1010):
        blob[i] ^= 0xFF
    target.write_bytes(bytes(blob))
    cache = tmp_path / "cache"

    with serve(served) as url, pytest.raises(ChecksumError) as caught:
        data.load("fashion-mnist", cache_dir=cache, system_dirs=(), mirror=url)
    message = str(caught.value)
    assert NAMES[0] in message
    assert "expected md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d" in message
    assert "received md5:" in message and "gunzipped" in message
    assert cache_files(cache) == []  # no file, no temp file


def test_unreachable_mirror_without_copy_says_how_to_get_one(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    mirror = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(DatasetUnavailableError) as caught:
        data.load("fashion-mnist", cache_dir=cache, system_dirs=(), mirror=mirror)
    message = str(caught.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert str(cache / "fashion-mnist") in message
    assert "CNNLAB_MIRROR" in message and "CNNLAB_DATA" in message
    assert mirror in message  # the URL that failed
    assert cache_files(cache) == []


def test_download_off_without_copy(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="downloads are off"):
        data.load("fashion-mnist", cache_dir=tmp_path, system_dirs=(), download=False)


def test_env_vars_pick_cache_and_mirror(
    tmp_path: Path,
    served: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("CNNLAB_DATA", str(cache))
    with serve(served) as url:
        monkeypatch.setenv("CNNLAB_MIRROR", url)
        assert main(["fetch", "fashion-mnist", "--no-system-dirs"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "fashion-mnist")
    assert main(["check", "fashion-mnist", "--no-system-dirs"]) == 0


@pytest.fixture
def downloaded(tmp_path: Path, served: Path) -> Path:
    cache = tmp_path / "cache"
    with serve(served) as url:
        data.fetch("fashion-mnist", cache_dir=cache, system_dirs=(), mirror=url)
    return cache


def test_truncated_cache_file_is_a_clear_error(downloaded: Path) -> None:
    path = downloaded / "fashion-mnist" / NAMES[1]
    path.write_bytes(path.read_bytes()[:-100])
    # Caught by the gzip trailer (cheap check), before any hashing.
    with pytest.raises(
        ChecksumError, match=r"train-labels-idx1-ubyte\.gz: .*gzip trailer.*delete it"
    ):
        data.load("fashion-mnist", cache_dir=downloaded, system_dirs=())


def test_same_size_corruption_is_caught_once_mtime_changes(downloaded: Path) -> None:
    path = downloaded / "fashion-mnist" / NAMES[3]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(1, 1))  # a stamp records size and mtime; both are looked at
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch"):
        data.load("fashion-mnist", cache_dir=downloaded, system_dirs=())
    assert main(["check", "fashion-mnist", "--cache-dir", str(downloaded), "--no-system-dirs"]) == 1
