"""File-system plumbing shared by every job: listing sources, local copies for FFmpeg,
sidecar metadata and atomic small writes. Everything goes through Beam's ``FileSystems``,
so local paths and ``gs://`` behave the same.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

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
    return [src]


def sha256_of(uri: str) -> tuple[str, int]:
    """The content's sha256 and the number of bytes read to get it."""
    digest = hashlib.sha256()
    n = 0
    with FileSystems.open(uri, compression_type="uncompressed") as f:
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
    if "://" not in uri:
        yield uri
        return
    suffix = os.path.splitext(uri)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, prefix="framematch-") as tmp:
        with FileSystems.open(uri, compression_type="uncompressed") as src:
            shutil.copyfileobj(src, tmp, READ_CHUNK)
        tmp.flush()
        yield tmp.name


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
