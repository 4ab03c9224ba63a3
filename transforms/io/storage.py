"""File-system plumbing shared by every job: listing sources, local copies for FFmpeg,
sidecar metadata and atomic small writes. Everything goes through Beam's ``FileSystems``,
so local paths and ``gs://`` behave the same.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import csv
import dataclasses
import errno
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c
from apache_beam.io.filesystems import FileSystems

GLOB_CHARS = set("*?[")
READ_CHUNK = 1 << 20


def expand_source(src: str) -> list[str]:
    """File patterns for a source: a directory or prefix, a glob, a list file, or one file.

    A directory (local, or a ``gs://`` prefix ending in ``/``) is searched recursively; a
    ``.txt``/``.lst`` file holds one URI or pattern per line (``#`` starts a comment).
    """
    if any(c in src for c in GLOB_CHARS):
        return [src]
    if src.endswith("/") or os.path.isdir(src):
        return [FileSystems.join(src.rstrip("/"), "**")]
    if src.endswith((".txt", ".lst")):
        with FileSystems.open(src) as f:
            lines = io.TextIOWrapper(f, encoding="utf-8").read().splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if "://" in src and not FileSystems.exists(src):
        # An object store has no directories: ``gs://b/archive`` names no object, but is
        # the prefix the user means (matched alone it would silently list nothing).
        return [FileSystems.join(src, "**")]
    return [src]


def open_input(uri: str) -> BinaryIO:
    """An input file opened for reading its bytes as they are.

    A listing of a local directory also yields FIFOs, sockets and devices; opening or reading
    one blocks until some writer appears, which is forever for a stray FIFO in an archive.
    Those are refused with an ``OSError`` (a dead letter at stage ``read``) instead.
    """
    if "://" not in uri and not stat.S_ISREG(os.stat(uri).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", uri)
    return FileSystems.open(uri, compression_type="uncompressed")


def sha256_of(uri: str) -> tuple[str, int]:
    """The content's sha256 and the number of bytes read to get it."""
    digest = hashlib.sha256()
    n = 0
    with open_input(uri) as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
            n += len(chunk)
    return digest.hexdigest(), n


@contextlib.contextmanager
def local_path(uri: str) -> Iterator[str]:
    """A path FFmpeg can open: local files as they are, remote objects copied to a temp file.

    FFmpeg cannot read ``gs://``; a bounded temp file (deleted on exit) rather than a pipe
    keeps the container seekable, which MP4s with the index at the end and segment seeks need.
    """
    if not is_remote(uri):
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="framematch-") as directory:
        yield _copy_with_digests(uri, directory).path


@dataclasses.dataclass(frozen=True)
class LocalCopy:
    """A remote object copied to local disk, with the digests of exactly the bytes copied."""

    path: str
    size: int
    sha256: str
    crc32c: str  # base64 big-endian CRC32C, as Cloud Storage reports an object's checksum


def crc32c_base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _copy_with_digests(uri: str, directory: str) -> LocalCopy:
    """Copy an object to a new temp file in ``directory``, hashing it on the way (one read)."""
    fd, path = tempfile.mkstemp(suffix=os.path.splitext(uri)[1], prefix="framematch-",
                                dir=directory)
    sha256, crc = hashlib.sha256(), google_crc32c.Checksum()
    try:
        with os.fdopen(fd, "wb") as tmp, open_input(uri) as src:
            while chunk := src.read(READ_CHUNK):
                tmp.write(chunk)
                sha256.update(chunk)
                crc.update(chunk)
            size = tmp.tell()
    except BaseException:
        os.unlink(path)
        raise
    return LocalCopy(path, size, sha256.hexdigest(), crc32c_base64(crc.digest()))


class LocalCopies:
    """Local copies of remote objects for FFmpeg, made once per process and shared.

    Why: FFmpeg cannot read ``gs://``, and a pipe is not seekable (MP4s with the index at the
    end and segment seeks need a file). A remote video is probed and then decoded in
    segments on the same worker (``transforms.index``); with one copy per process, keyed by
    ``(uri, version)`` so a replaced object is never served from a stale copy, it is
    downloaded once, and its sha256 and CRC32C come from that same download. Thread-safe:
    a second thread asking for an object being copied waits for that copy. Least recently
    used copies are deleted once the total passes ``max_bytes``; the newest is always kept.
    Every copy is deleted when the process exits.
    """

    def __init__(self, max_bytes: int = 2 << 30):
        self.max_bytes = max_bytes
        self._dir = tempfile.mkdtemp(prefix="framematch-copies-")
        self._lock = threading.Lock()
        self._copies: OrderedDict[tuple[str, str], LocalCopy] = OrderedDict()
        self._pending: dict[tuple[str, str], threading.Event] = {}
        atexit.register(self.close)

    def get(self, uri: str, version: object) -> tuple[LocalCopy, int]:
        """The copy of ``uri`` at ``version`` and the bytes this call downloaded (0 if cached)."""
        key = (uri, str(version))
        while True:
            with self._lock:
                if key in self._copies:
                    self._copies.move_to_end(key)
                    return self._copies[key], 0
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = threading.Event()
                    break
            pending.wait()
        try:
            copy = _copy_with_digests(uri, self._dir)
            with self._lock:
                self._copies[key] = copy
                while len(self._copies) > 1 and sum(
                        c.size for c in self._copies.values()) > self.max_bytes:
                    os.unlink(self._copies.popitem(last=False)[1].path)
            return copy, copy.size
        finally:
            with self._lock:
                self._pending.pop(key).set()

    def close(self) -> None:
        """Delete every copy."""
        with self._lock:
            self._copies.clear()
        shutil.rmtree(self._dir, ignore_errors=True)


_PROCESS_COPIES: LocalCopies | None = None
_PROCESS_COPIES_LOCK = threading.Lock()


def local_copies() -> LocalCopies:
    """This process's ``LocalCopies`` (created on first use)."""
    global _PROCESS_COPIES
    with _PROCESS_COPIES_LOCK:
        if _PROCESS_COPIES is None:
            _PROCESS_COPIES = LocalCopies()
        return _PROCESS_COPIES


def is_remote(uri: str) -> bool:
    """Whether FFmpeg needs a local copy of ``uri`` (an object store path, not a file)."""
    return "://" in uri


def read_text(uri: str) -> str:
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        return f.read().decode("utf-8")


def write_text_atomic(uri: str, text: str) -> None:
    """Write a small file so that readers see the old or the new content, never half.

    Local files are written beside the target and renamed over it; an object store makes
    the object visible only when the upload completes.
    """
    if "://" in uri:
        with FileSystems.create(uri, mime_type="application/json") as f:
            f.write(text.encode("utf-8"))
        return
    os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(uri)), prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, uri)


def create_exclusive(uri: str, text: str) -> bool:
    """Create ``uri`` holding ``text`` only if nothing is there yet; False if something is.

    The one compare-and-swap primitive of framematch (the manifest log's commit). Readers
    see the whole file or none. Locally the file is written beside the target and hard-linked
    into place: ``link`` fails when the name exists, atomically, with no lock to leave
    behind if the writer dies. On ``gs://`` the upload carries ``if_generation_match=0``
    (Beam's ``FileSystems`` has no preconditions, so google-cloud-storage does it); an
    upload retried after a lost reply meets its own first copy, which counts as a success
    when its bytes are ours.
    """
    data = text.encode("utf-8")
    if uri.startswith("gs://"):
        from google.api_core.exceptions import PreconditionFailed

        blob = _blob(uri)
        try:
            blob.upload_from_string(data, content_type="application/json",
                                    if_generation_match=0)
            return True
        except PreconditionFailed:
            return blob.download_as_bytes() == data
    if "://" in uri:
        raise ValueError(f"no exclusive create for {uri}: only local paths and gs://")
    directory = os.path.dirname(os.path.abspath(uri))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, uri)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _blob(uri: str):
    from transforms.io.gcs_auth import storage_client

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return storage_client().bucket(bucket).blob(name)


def list_names(directory: str) -> list[str]:
    """The names of the files directly in ``directory`` (local or ``gs://``; [] if none).

    On ``gs://`` through the same client as ``create_exclusive`` (one listing request), so
    the commit protocol is tested against the emulator that enforces preconditions.
    """
    if directory.startswith("gs://"):
        bucket, _, prefix = directory.rstrip("/").removeprefix("gs://").partition("/")
        from transforms.io.gcs_auth import storage_client

        blobs = storage_client().list_blobs(bucket, prefix=f"{prefix}/", delimiter="/")
        return [b.name.rsplit("/", 1)[-1] for b in blobs]
    try:
        return [n for n in os.listdir(directory) if os.path.isfile(os.path.join(directory, n))]
    except FileNotFoundError:
        return []


def read_small(uri: str) -> str:
    """A small file's text; ``gs://`` through the client of ``create_exclusive``.
    Raises ``FileNotFoundError`` when it is not there."""
    if uri.startswith("gs://"):
        from google.api_core.exceptions import NotFound

        try:
            return _blob(uri).download_as_bytes().decode("utf-8")
        except NotFound as error:
            raise FileNotFoundError(uri) from error
    with open(uri, encoding="utf-8") as f:
        return f.read()


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)


def read_sidecar(uri: str | None, key: str) -> dict[str, dict[str, str]]:
    """Rows of a CSV or JSONL sidecar keyed by ``key`` (a URI or a bare file name), read in
    this process (``import``; the Beam jobs read theirs inside the pipeline: ``ReadSidecar``)."""
    if not uri:
        return {}
    return dict(sidecar_rows(read_text(uri), uri, key))


def sidecar_rows(text: str, uri: str, key: str) -> list[tuple[str, dict[str, str | None]]]:
    """``(key value, row)`` of each row of a CSV or JSONL sidecar's ``text``."""
    if uri.endswith((".jsonl", ".json", ".ndjson")):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    missing = [i + 1 for i, r in enumerate(rows) if not r.get(key)]
    if missing:
        raise ValueError(f"sidecar {uri}: rows {missing[:5]} have no {key!r} column value")
    return [(str(r[key]), {k: None if v in ("", None) else str(v) for k, v in r.items()})
            for r in rows]


def sidecar_lookup(sidecar, uri: str) -> dict[str, str]:
    """A sidecar row for a URI, matched on the full URI first, then on the file name.

    ``sidecar`` is a dict of rows, or the multimap side input of ``ReadSidecar`` (each key
    a list of rows, empty when absent)."""
    for key in (uri, uri.rsplit("/", 1)[-1]):
        try:
            found = sidecar[key]
        except KeyError:
            continue
        if isinstance(found, list):
            if found:
                return found[0]
        elif found:
            return found
    return {}


@contextlib.contextmanager
def created_atomically(uri: str) -> Iterator[BinaryIO]:
    """A file to write that appears at ``uri`` only once it is complete.

    It is written under a hidden temporary name beside ``uri`` and renamed into place.
    """
    directory, name = posixpath.split(uri)
    tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    with FileSystems.create(tmp, mime_type="application/octet-stream") as f:
        yield f
    if FileSystems.exists(uri):  # a retried bundle: its earlier file goes first
        FileSystems.delete([uri])
    FileSystems.rename([tmp], [uri])
