"""Change detection: the archive listing against the live index, URI by URI.

A run indexes what it lists: new files and files whose size or generation changed. What
the listing does not name is not this run's business (see ``DetectChanges``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
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


class DetectChanges(beam.DoFn):
    """Compares the listing with the live index: new, replaced, deleted or unchanged.

    Main output: (uri, size, generation) to index. Tagged outputs: tombstone
    ``VideoRecord``s for deleted or replaced videos, and dead letters for listed files that
    are not video containers (so every listed file is accounted for).
    """

    TOMBSTONES = "tombstones"

    def __init__(self, batch_id: str, run_id: str):
        self.batch_id = batch_id
        self.run_id = run_id
        self.unchanged = Metrics.counter("index", "videos_unchanged")
        self.listed = Metrics.counter("index", "files_listed")
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
        if live and not imported:  # received hash lists are never in the archive listing
            self.deleted.inc()
            yield beam.pvalue.TaggedOutput(self.TOMBSTONES, VideoRecord(**{
                **{f: known[f] for f in VideoRecord._fields if f in known},
                "batch_id": self.batch_id, "deleted": True, "warning": None,
            }))
