"""Find a dataset's files (user cache, then system folders, then a download) and verify them."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cnnlab.core.errors import ChecksumError, ConfigError, DatasetUnavailableError
from cnnlab.data.sources import DEFAULT_SYSTEM_DIRS, DatasetSource, RemoteFile

CHUNK = 1 << 20  # bytes read per hashing / download step
PROGRESS_MIN_BYTES = 1 << 20  # files at least this big show a progress bar
TIMEOUT_S = 30  # socket timeout of one read, not of the whole download
STAMP_FILE = ".verified.json"
HASHES = ("md5", "sha256")
FILE_MODE = 0o644  # mkstemp creates 0600; cached data is meant to be shared like any download


def default_cache_dir() -> Path:
    """``$CNNLAB_DATA`` if set, else ``~/.cache/cnnlab``."""
    return Path(os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab").expanduser()


@dataclass(frozen=True)
class Resolver:
    """Where to look for dataset files and whether a download is allowed.

    Attributes:
        cache_dir: the user cache root; a dataset lives in ``cache_dir/<name>/``.
        system_dirs: read-only roots searched as ``<root>/<name>/`` after the cache.
        mirror: base URL replacing the official ones; ``{name}`` in it becomes the
            dataset name, and the file name is appended.
        download: allow downloads at all.
    """

    cache_dir: Path
    system_dirs: tuple[Path, ...]
    mirror: str | None
    download: bool

    @classmethod
    def create(
        cls,
        cache_dir: str | os.PathLike[str] | None = None,
        system_dirs: Iterable[str | os.PathLike[str]] | None = None,
        mirror: str | None = None,
        download: bool = True,
    ) -> Resolver:
        """Fill the defaults: ``$CNNLAB_DATA``, ``$CNNLAB_DATA_DIRS`` (roots separated by
        ``os.pathsep``, searched before Debian's dataset roots), ``$CNNLAB_MIRROR``."""
        if system_dirs is None:
            extra = os.environ.get("CNNLAB_DATA_DIRS", "").split(os.pathsep)
            roots: tuple[str | os.PathLike[str], ...] = (
                *(d for d in extra if d.strip()),
                *DEFAULT_SYSTEM_DIRS,
            )
        else:
            roots = tuple(system_dirs)
        return cls(
            cache_dir=Path(cache_dir).expanduser() if cache_dir else default_cache_dir(),
            system_dirs=tuple(Path(r) for r in roots),
            mirror=mirror or os.environ.get("CNNLAB_MIRROR") or None,
            download=download,
        )

    def folders(self, source: DatasetSource) -> list[Path]:
        """The folders searched for local copies, in order: cache first."""
        return [self.cache_dir / source.name, *(root / source.name for root in self.system_dirs)]

    def urls(self, source: DatasetSource, spec: RemoteFile) -> list[str]:
        """Candidate URLs of one file: the mirror alone if given, else the official list."""
        bases = [self.mirror.replace("{name}", source.name)] if self.mirror else list(source.urls)
        return [base.rstrip("/") + "/" + spec.name for base in bases]


# -- verification -----------------------------------------------------------------------


def _digests_of(chunks: Iterator[bytes]) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in HASHES}
    for chunk in chunks:
        for hasher in hashers.values():
            hasher.update(chunk)
    return {name: f"{name}:{h.hexdigest()}" for name, h in hashers.items()}


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _gunzip_chunks(path: Path, limit: int | None) -> Iterator[bytes]:
    """Gunzipped bytes of a file, in bounded pieces: a forged file cannot blow up memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: expect a gzip header
    total = 0
    for chunk in _file_chunks(path):
        while chunk and not inflater.eof:
            piece = inflater.decompress(chunk, CHUNK)
            total += len(piece)
            if limit is not None and total > limit:
                raise zlib.error(f"more than the {limit} bytes the table expects")
            yield piece
            chunk = inflater.unconsumed_tail
    tail = inflater.flush()  # output zlib still holds once all input went in
    if limit is not None and total + len(tail) > limit:
        raise zlib.error(f"more than the {limit} bytes the table expects")
    yield tail
    if not inflater.eof:
        raise zlib.error("truncated gzip stream")


def _first_match(received: dict[str, str] | None, expected: tuple[str, ...]) -> str | None:
    for digest in expected:
        if received and received.get(digest.partition(":")[0]) == digest.lower():
            return digest
    return None


def check_digest_syntax(digest: str) -> None:
    """Refuse digests other than ``md5:<32 hex>`` and ``sha256:<64 hex>``."""
    algo, _, hexd = digest.partition(":")
    lengths = {"md5": 32, "sha256": 64}
    if algo not in lengths or len(hexd) != lengths[algo]:
        raise ConfigError(f"digest {digest!r}: expected 'md5:<32 hex>' or 'sha256:<64 hex>'")


def cheap_check(path: Path, spec: RemoteFile) -> str | None:
    """Size checks that need no hashing; returns what is wrong, or None.

    For a ``.gz`` file the last 4 bytes hold the gunzipped size (mod 2**32), which
    catches truncated downloads whatever compressor produced the file.
    """
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"expected {spec.size} bytes, received {size} bytes"
    if spec.raw_size is not None:
        if size < 18:  # smallest possible gzip file
            return f"expected a gzip file, received {size} bytes"
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = int.from_bytes(f.read(4), "little")
        if isize != spec.raw_size % 2**32:
            return f"gzip trailer says {isize} bytes inside, expected {spec.raw_size}"
    return None


def verify_file(path: Path, spec: RemoteFile, shown: str | None = None) -> str:
    """Verify a file against its published digests; returns the digest that matched.

    Args:
        path: the file to hash.
        spec: its table entry.
        shown: how to name the file in the error (default: its path).

    Raises:
        ChecksumError: names the file, the expected digests and the received ones.
    """
    problem = cheap_check(path, spec)
    if problem is None:
        received = _digests_of(_file_chunks(path))
        matched, content = _first_match(received, spec.digests), None
        if matched is None and spec.content_digests:
            content = _content_digests(path, spec)
            matched = _first_match(content, spec.content_digests)
        if matched:
            return matched
        problem = (
            f"expected {' or '.join(spec.digests)}, received {received['md5']} {received['sha256']}"
        )
        if spec.content_digests:
            inside = content["md5"] if content else "not a valid gzip stream"
            problem += (
                f"; gunzipped: expected {' or '.join(spec.content_digests)}, received {inside}"
            )
    raise ChecksumError(f"{shown or path}: checksum mismatch for {spec.name}: {problem}")


def _content_digests(path: Path, spec: RemoteFile) -> dict[str, str] | None:
    try:
        return _digests_of(_gunzip_chunks(path, spec.raw_size))
    except (zlib.error, OSError):
        return None


class StampBook:
    """Remembers (size, mtime) of files already fully verified, in ``<cache>/<name>/``.

    A full checksum runs the first time a file is used (downloaded, or found in a system
    folder) and again whenever its size or modification time changes; otherwise only the
    cheap size checks run. The stamp is a convenience: if it cannot be written (read-only
    cache), every load verifies in full.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / STAMP_FILE
        self.dirty = False
        try:
            self.entries: dict[str, list[int]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def _key(path: Path) -> tuple[str, list[int]]:
        stat = path.stat()
        return str(path.resolve()), [stat.st_size, stat.st_mtime_ns]

    def is_verified(self, path: Path) -> bool:
        key, value = self._key(path)
        return self.entries.get(key) == value

    def mark(self, path: Path) -> None:
        """Remember ``path`` as verified; :meth:`save` writes the book (once per dataset:
        FSDD has 3,000 files, and a write per file cost ~25 s)."""
        key, value = self._key(path)
        self.entries[key] = value
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        with contextlib.suppress(OSError):  # read-only cache: verify in full next time
            atomic_write(self.path, json.dumps(self.entries, indent=1).encode())
        self.dirty = False


def verify_local(path: Path, spec: RemoteFile, stamps: StampBook) -> None:
    """Cheap checks always; the full checksum unless a stamp says it already passed."""
    problem = cheap_check(path, spec)
    if problem is not None:
        raise ChecksumError(f"{path}: {spec.name}: {problem}; delete it to fetch a fresh copy")
    if stamps.is_verified(path):
        return
    try:
        verify_file(path, spec)
    except ChecksumError as error:
        raise ChecksumError(f"{error}; delete it to fetch a fresh copy") from None
    stamps.mark(path)


# -- download ---------------------------------------------------------------------------


def atomic_write(dest: Path, data: bytes) -> None:
    """Write bytes via a temp file in the same folder, fsync, then os.replace."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stream(url: str, out: Path, label: str) -> None:
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(out, "wb") as f:
        total = int(response.headers.get("Content-Length") or 0) or None
        big = total is None or total >= PROGRESS_MIN_BYTES
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, disable=not big
        ) as bar:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())


def download_file(url: str, dest: Path, spec: RemoteFile) -> None:
    """Download ``url`` to ``dest``: temp file in the same folder, verify, fsync, os.replace.

    Raises:
        ChecksumError: the download does not match; nothing is left behind.
        urllib.error.URLError, OSError: the transfer failed; nothing is left behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, FILE_MODE)
        _stream(url, tmp, spec.name)
        verify_file(tmp, spec, shown=f"{url} (not saved to {dest.parent})")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(dest.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- resolution -------------------------------------------------------------------------


def find_local(source: DatasetSource, resolver: Resolver) -> dict[str, Path] | None:
    """Verified local copies of every file (cache first, then system folders), or None.

    Raises:
        ChecksumError: a local copy exists but is corrupt.
    """
    stamps = StampBook(resolver.cache_dir / source.name)
    found: dict[str, Path] = {}
    try:
        for spec in source.files:
            path = _local_copy(source, spec, resolver)
            if path is None:
                return None
            verify_local(path, spec, stamps)
            found[spec.name] = path
    finally:
        stamps.save()
    return found


def _local_copy(source: DatasetSource, spec: RemoteFile, resolver: Resolver) -> Path | None:
    return next(
        (f / spec.name for f in resolver.folders(source) if (f / spec.name).is_file()), None
    )


def resolve(source: DatasetSource, resolver: Resolver) -> dict[str, Path]:
    """Paths of every file of ``source``, downloading into the cache what is missing.

    Raises:
        ChecksumError: a local copy or a download does not match its checksum.
        DatasetUnavailableError: no local copy and no download possible; the message
            says how to get one.
    """
    stamps = StampBook(resolver.cache_dir / source.name)
    paths: dict[str, Path] = {}
    try:
        for spec in source.files:
            local = _local_copy(source, spec, resolver)
            if local is not None:
                verify_local(local, spec, stamps)
                paths[spec.name] = local
                continue
            dest = resolver.cache_dir / source.name / spec.name
            _download_any(source, spec, resolver, dest)
            stamps.mark(dest)
            paths[spec.name] = dest
    finally:
        stamps.save()
    return paths


def _download_any(source: DatasetSource, spec: RemoteFile, resolver: Resolver, dest: Path) -> None:
    if not resolver.download:
        raise DatasetUnavailableError(how_to_get(source, resolver, "downloads are off"))
    failures: list[str] = []
    checksum_error: ChecksumError | None = None
    for url in resolver.urls(source, spec):
        try:
            download_file(url, dest, spec)
            return
        except ChecksumError as error:
            checksum_error = error
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            failures.append(f"{url}: {getattr(error, 'reason', error)}")
    if checksum_error is not None:
        raise checksum_error
    raise DatasetUnavailableError(
        how_to_get(source, resolver, "download failed: " + "; ".join(failures))
    )


def how_to_get(source: DatasetSource, resolver: Resolver, reason: str) -> str:
    """The message of DatasetUnavailableError: where we looked and how to get a copy."""
    cache = resolver.cache_dir / source.name
    looked = ", ".join(str(f) for f in resolver.folders(source))
    names = ", ".join(spec.name for spec in source.files)
    lines = [
        f"no local copy of dataset {source.name!r} ({reason}).",
        f"Looked in: {looked}.",
        "To get a copy, do one of:",
    ]
    if source.apt_package:
        lines.append(
            f"  - sudo apt-get install {source.apt_package}"
            f"   (installs /usr/share/datasets/{source.name}/)"
        )
    lines += [
        f"  - download {names} from {source.urls[0]} into {cache}/",
        f"  - python -m cnnlab.data fetch {source.name} --mirror <base URL holding {names}>"
        " (or set CNNLAB_MIRROR)",
        "  - set CNNLAB_DATA=<folder> to use another cache folder",
        f"  - set CNNLAB_DATA_DIRS=<root> if <root>/{source.name}/ already holds the files",
    ]
    return "\n".join(lines)
