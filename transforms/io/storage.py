"""File-system plumbing shared by every job: listing sources, local copies for FFmpeg,
sidecar metadata and atomic small writes. Everything goes through Beam's ``FileSystems``,
so local paths and ``gs://`` behave the same.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import BinaryIO

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


def _copy_to_temp(uri: str, directory: str | None = None) -> tuple[str, int]:
    """Copy an object to a new local temp file; returns its path and size (caller deletes)."""
    fd, path = tempfile.mkstemp(suffix=os.path.splitext(uri)[1], prefix="framematch-",
                                dir=directory)
    try:
        with os.fdopen(fd, "wb") as tmp, open_input(uri) as src:
            shutil.copyfileobj(src, tmp, READ_CHUNK)
            size = tmp.tell()
    except BaseException:
        os.unlink(path)
        raise
    return path, size


@contextlib.contextmanager
def local_path(uri: str) -> Iterator[str]:
    """A path FFmpeg can open: local files as they are, remote objects copied to a temp file.

    FFmpeg cannot read ``gs://``; a bounded temp file (deleted on exit) rather than a pipe
    keeps the container seekable, which MP4s with the index at the end and segment seeks need.
    """
    if "://" not in uri:
        yield uri
        return
    path, _ = _copy_to_temp(uri)
    try:
        yield path
    finally:
        os.unlink(path)


class LocalCopies:
    """Local copies of remote objects, made once and reused while they fit in ``max_bytes``.

    Why: a long video is decoded in segments, each a separate element; with ``local_path``
    every segment would copy the whole object again (segments x size of transfer). Keyed by
    ``(uri, version)`` so a replaced object is never served from a stale copy. Least
    recently used copies are deleted first; the newest copy is always kept, even when it
    alone is over the bound. Not thread-safe: one per DoFn instance (a DoFn instance runs
    one bundle at a time), created in ``setup`` and ``close``d in ``teardown``.
    """

    def __init__(self, max_bytes: int = 2 << 30):
        self.max_bytes = max_bytes
        self.bytes_copied = 0
        self._dir = tempfile.mkdtemp(prefix="framematch-copies-")
        self._copies: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()

    def path(self, uri: str, version: object) -> str:
        """A local path for ``uri``: the file itself, or a (possibly cached) copy."""
        if "://" not in uri:
            return uri
        key = (uri, str(version))
        if key in self._copies:
            self._copies.move_to_end(key)
            return self._copies[key][0]
        path, size = _copy_to_temp(uri, self._dir)
        self.bytes_copied += size
        self._copies[key] = (path, size)
        while len(self._copies) > 1 and sum(s for _, s in self._copies.values()) > self.max_bytes:
            old, _ = self._copies.popitem(last=False)[1]
            os.unlink(old)
        return path

    def close(self) -> None:
        """Delete every copy."""
        self._copies.clear()
        shutil.rmtree(self._dir, ignore_errors=True)


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


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)


def read_sidecar(uri: str | None, key: str) -> dict[str, dict[str, str]]:
    """Rows of a CSV or JSONL sidecar keyed by ``key`` (a URI or a bare file name)."""
    if not uri:
        return {}
    text = read_text(uri)
    if uri.endswith((".jsonl", ".json", ".ndjson")):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    missing = [i + 1 for i, r in enumerate(rows) if not r.get(key)]
    if missing:
        raise ValueError(f"sidecar {uri}: rows {missing[:5]} have no {key!r} column value")
    return {str(r[key]): {k: None if v in ("", None) else str(v) for k, v in r.items()}
            for r in rows}


def sidecar_lookup(sidecar: dict[str, dict[str, str]], uri: str) -> dict[str, str]:
    """A sidecar row for a URI, matched on the full URI first, then on the file name."""
    return sidecar.get(uri) or sidecar.get(uri.rsplit("/", 1)[-1]) or {}


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
