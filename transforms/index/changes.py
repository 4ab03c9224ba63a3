"""Change detection: the archive listing against the live index, URI by URI.

A run indexes what it lists: new files and files whose size or generation changed. What
the listing does not name is not this run's business: a live video the listing lacks stays
live, unless the run was asked to tombstone deleted files (``--delete_missing``) *and* the
video's URI lies under one of the patterns this run listed (``ListedScope``): indexing
``archive/2026-11/`` alone never touches ``archive/2025/``, a typo in ``--archive`` lists
nothing (and is refused before anything runs), and even a scoped deletion past
``--max_delete_fraction`` of the live videos is refused at commit (``pipelines.index``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.records import DEAD_LETTER, DeadLetter, VideoRecord
from transforms.io import storage

VIDEO_EXTENSIONS = frozenset([
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts", ".mts", ".m2ts", ".mpg",
    ".mpeg", ".3gp", ".ogv", ".wmv",
])
# The warning of a takedown tombstone (``framematch takedown``): unlike a deleted file's
# tombstone it stays down while the file is still listed.
TAKEDOWN = "takedown"


def video_id_for(uri: str, sha256: str) -> int:
    """A stable 63-bit id: the same file at the same URI always gets the same id."""
    digest = hashlib.sha256(f"{uri}\0{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def generation_of(metadata: FileMetadata) -> str:
    """The change-detection key: mtime for local files, update time for objects."""
    return f"{metadata.last_updated_in_seconds:.6f}"


def latest_row(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The newest state of a URI across partitions (batch ids sort by creation time).

    A replaced file leaves a tombstone and a new row in the same batch: the new row wins.
    """
    return max(rows, key=lambda r: (r["batch_id"], not r["deleted"]))


class ListedScope:
    """Whether a URI lies under the patterns a run listed: matched as Beam's file systems
    match a glob (``*`` within a path segment, ``**`` across them), so "under what this run
    listed" means exactly "would have been listed, had it still existed"."""

    def __init__(self, patterns: Sequence[str]):
        self.patterns = list(patterns)
        self._regexes = [re.compile(FileSystem.translate_pattern(p)) for p in self.patterns]

    def __contains__(self, uri: str) -> bool:
        return any(r.match(uri) for r in self._regexes)

    def __reduce__(self):  # pickled into workers as its patterns
        return ListedScope, (self.patterns,)


class DetectChanges(beam.DoFn):
    """Compares the listing with the live index: new, replaced, deleted or unchanged.

    Main output: (uri, size, generation) to index. Tagged outputs: tombstone
    ``VideoRecord``s for replaced videos (and, with ``delete_scope``, for live videos under
    it that are gone), and dead letters for listed files that are not video containers (so
    every listed file is accounted for). ``videos_live`` counts the live videos before this
    run, the base of ``--max_delete_fraction``.
    """

    TOMBSTONES = "tombstones"

    def __init__(self, batch_id: str, run_id: str, delete_scope: ListedScope | None = None):
        self.batch_id = batch_id
        self.run_id = run_id
        self.delete_scope = delete_scope
        self.unchanged = Metrics.counter("index", "videos_unchanged")
        self.listed = Metrics.counter("index", "files_listed")
        self.live = Metrics.counter("index", "videos_live")
        self.not_listed = Metrics.counter("index", "videos_not_listed")
        self.deleted = Metrics.counter("index", "videos_deleted")
        self.same_content = Metrics.counter("index", "videos_touched_same_content")

    def _same_content(self, uri: str, known: dict[str, Any]) -> bool:
        """Whether a file whose time moved still holds the bytes indexed: an object rewritten
        with the same content (a storage class change, a metadata update) has the same
        CRC32C (one metadata request); a local file touched, copied back or restored from a
        backup has the same sha256 (one read, no decode)."""
        if storage.is_remote(uri):
            same = known.get("checksum") is not None and \
                FileSystems.checksum(uri) == known["checksum"]
        else:
            same = storage.sha256_of(uri)[0] == known["sha256"]
        self.same_content.inc(same)
        return same

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator[Any]:
        uri, grouped = element
        listed: list[FileMetadata] = grouped["listed"]
        known_rows = grouped["known"]
        known = latest_row(known_rows) if known_rows else None
        live = known is not None and not known["deleted"]
        taken_down = known is not None and known["deleted"] and (
            (known.get("warning") or "").startswith(TAKEDOWN))
        self.live.inc(live)
        if listed:
            self.listed.inc()
            meta = listed[0]
            if os.path.splitext(uri)[1].lower() not in VIDEO_EXTENSIONS:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(
                    uri, "list", "skipped: not a video container extension", self.run_id))
                return
            generation = generation_of(meta)
            if taken_down:  # accounted for as unchanged: the index keeps it out
                self.unchanged.inc()
                return
            if live and known["size"] == meta.size_in_bytes and (
                    known["generation"] == generation or self._same_content(uri, known)):
                self.unchanged.inc()
                return
            yield (uri, meta.size_in_bytes, generation)
        imported = live and (known.get("codec") or "").startswith("import:")
        if not live or imported:  # received hash lists are never in the archive listing
            return
        if listed:  # replaced: its old rows go
            yield self._tombstone(known)
        elif self.delete_scope is not None and uri in self.delete_scope:
            self.deleted.inc()
            yield self._tombstone(known)
        else:
            self.not_listed.inc()  # not this run's business: it stays live

    def _tombstone(self, known: dict[str, Any]) -> beam.pvalue.TaggedOutput:
        return beam.pvalue.TaggedOutput(self.TOMBSTONES, VideoRecord(**{
            **{f: known[f] for f in VideoRecord._fields if f in known},
            "batch_id": self.batch_id, "deleted": True, "warning": None,
        }))
