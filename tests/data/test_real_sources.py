"""The real signal, text and speech sources: packaged checksums, $CNNLAB_DATA_DIRS, verification."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cnnlab import data
from cnnlab.core.errors import ChecksumError, DatasetUnavailableError
from cnnlab.data.download import Resolver
from cnnlab.data.real_sources import CWRU, FSDD, MR, REAL_SOURCES


def test_packaged_checksum_lists_name_every_file_once() -> None:
    assert len(FSDD.files) == 3000 and len(MR.files) == 2 and len(CWRU.files) == 10
    assert {f.name for f in MR.files} == {"rt-polarity.neg", "rt-polarity.pos"}
    for source in REAL_SOURCES.values():
        names = [f.name for f in source.files]
        assert len(set(names)) == len(names)
        assert all(
            d.startswith("sha256:") and len(d) == 71 for f in source.files for d in f.digests
        )
    assert all(f.name.startswith("recordings/") for f in FSDD.files)


def test_data_dirs_environment_variable_adds_roots_before_the_system_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CNNLAB_DATA_DIRS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    roots = Resolver.create(cache_dir=tmp_path / "cache").system_dirs
    assert roots[:2] == (tmp_path / "a", tmp_path / "b")
    assert Path("/usr/share/datasets") in roots
    # An explicit list wins over the variable.
    assert Resolver.create(cache_dir=tmp_path, system_dirs=[tmp_path]).system_dirs == (tmp_path,)


def test_a_local_copy_is_found_and_verified_and_a_corrupt_one_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    good, bad = b"a good line\n", b"a changed line\n"
    folder = tmp_path / "root" / "mr"
    folder.mkdir(parents=True)
    specs = []
    for name in ("rt-polarity.neg", "rt-polarity.pos"):
        (folder / name).write_bytes(good)
        digest = hashlib.sha256(good).hexdigest()
        specs.append(data.sources.RemoteFile(name, (f"sha256:{digest}",)))
    fake = data.sources.DatasetSource(
        "mr", MR.title, MR.homepage, ("http://127.0.0.1:9/",), tuple(specs), MR.classes,
        MR.input_shape, 1, 1,
    )  # fmt: skip
    monkeypatch.setitem(data.SOURCES, "mr", fake)
    monkeypatch.setenv("CNNLAB_DATA_DIRS", str(tmp_path / "root"))
    found = data.find_local("mr", cache_dir=tmp_path / "cache")
    assert found is not None and found["rt-polarity.pos"] == folder / "rt-polarity.pos"
    (folder / "rt-polarity.pos").write_bytes(bad)
    with pytest.raises(ChecksumError):
        data.find_local("mr", cache_dir=tmp_path / "cache2")


def test_no_copy_and_no_download_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="rt-polarity"):
        data.fetch("mr", cache_dir=tmp_path, system_dirs=[], download=False)


@pytest.mark.parametrize("name", ["mr", "cwru", "fsdd"])
def test_the_shared_copies_match_the_packaged_checksums(name: str, shared_data: Path) -> None:
    found = data.find_local(name, system_dirs=[shared_data])
    assert found is not None and len(found) == len(REAL_SOURCES[name].files)
