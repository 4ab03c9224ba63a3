"""The steps that turn listed video files into index rows.

Listing → change detection against the live index → probe (sha256 + ffprobe) → time
segments, reshuffled so one long video keeps every worker busy → decode + hash + prune per
segment → per-video finalisation, where a video either becomes a ``VideoRecord`` with its
``FrameRecord`` rows or a ``DeadLetter`` saying at which stage it failed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import FileMetadata
from apache_beam.metrics import Metrics

from schemas.records import DeadLetter, FrameRecord, ReferenceRecord, VideoRecord
from transforms import decode, hashing, io, preprocess, verify
from transforms.sampling import prune

VIDEO_EXTENSIONS = frozenset([
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts", ".mts", ".m2ts", ".mpg",
    ".mpeg", ".3gp", ".ogv", ".wmv",
])
PROGRESS = logging.getLogger("framematch.progress")  # one line per decoded segment
DEAD = "dead_letter"
FRAMES = "frames"
# The warning of a takedown tombstone (``framematch takedown``): unlike a deleted file's
# tombstone it stays down while the file is still listed.
TAKEDOWN = "takedown"
REFERENCES = "references"


class Segment(NamedTuple):
    video_id: int
    uri: str
    start: float
    end: float
    width: int
    height: int


class SegmentResult(NamedTuple):
    start: float
    n_decoded: int
    rows: list[FrameRecord]
    references: list[ReferenceRecord]
    error: str | None
    error_stage: str | None


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
                yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
                    uri, "list", "skipped: not a video container extension", self.run_id))
                return
            generation = generation_of(meta)
            if taken_down:  # accounted for as unchanged: the index keeps it out
                self.unchanged.inc()
                return
            if live and known["size"] == meta.size_in_bytes and known["generation"] == generation:
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


class ProbeVideo(beam.DoFn):
    """Reads a new file once for its sha256, then asks ffprobe what it is."""

    def __init__(self, batch_id: str, run_id: str, sidecar: dict[str, dict[str, str]],
                 probe_timeout_s: float, max_memory_mb: int | None = decode.MAX_MEMORY_MB):
        self.max_memory_mb = max_memory_mb
        self.batch_id = batch_id
        self.run_id = run_id
        self.sidecar = sidecar
        self.probe_timeout_s = probe_timeout_s
        self.bytes_read = Metrics.counter("index", "bytes_read")
        self.failed = Metrics.counter("index", "videos_failed")

    def process(self, element: tuple[str, int, str]) -> Iterator[Any]:
        uri, size, generation = element
        try:
            sha256, n = io.sha256_of(uri)
            self.bytes_read.inc(n)
            with io.local_path(uri) as path:
                info = decode.probe(path, timeout_s=self.probe_timeout_s,
                                    max_memory_mb=self.max_memory_mb)
        except decode.DecodeError as e:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(uri, e.stage, str(e), self.run_id))
            return
        except OSError as e:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(uri, "read", repr(e), self.run_id))
            return
        meta = io.sidecar_lookup(self.sidecar, uri)
        yield VideoRecord(
            video_id=video_id_for(uri, sha256), uri=uri, sha256=sha256, size=size,
            generation=generation, start_time=info.start_time, duration=info.duration,
            width=info.width, height=info.height, codec=info.codec, n_frames_decoded=0,
            n_rows=0, batch_id=self.batch_id, deleted=False,
            title=meta.get("title"), source_url=meta.get("source_url"),
            published=meta.get("published"), rights=meta.get("rights"),
        )


def plan_segments(video: VideoRecord, segment_s: float) -> list[Segment]:
    info = decode.VideoInfo(video.start_time, video.duration, video.width, video.height,
                            video.codec)
    return [Segment(video.video_id, video.uri, s, e, video.width, video.height)
            for s, e in decode.plan_segments(info, segment_s)]


def frame_rows(video_id: int, pts: np.ndarray, thumbs: np.ndarray, hashers: Sequence[str],
               prune_d: int) -> tuple[list[FrameRecord], np.ndarray]:
    """The rows of one segment: whole-frame rows where the key hash moved, and the regions.

    Returns the rows and the indices of the kept frames. The key hash of the whole frame is
    computed for every decoded frame, since pruning needs it; everything else (the other
    regions' keys, pHash, dHash, PDQ) only for the frames kept, which is what keeps
    indexing close to the speed of decoding. Region rows share the whole-frame rows' times:
    a region is re-hashed when the whole frame has moved.
    """
    key = hashing.phash256_regions(thumbs, [preprocess.FULL])[0]
    keep, ends = prune(pts, key, preprocess.is_flat(thumbs), prune_d)
    kept = thumbs[keep]
    extra = hashing.hash_batch(kept, hashers) if hashers else {}
    phash = hashing.to_uint64(extra["phash"]) if "phash" in extra else None
    dhash = hashing.to_uint64(extra["dhash"]) if "dhash" in extra else None
    boxes = [box for _, box in preprocess.REGIONS.values()]
    keys = hashing.phash256_regions(kept, boxes)
    rows: list[FrameRecord] = []
    for region, (_, box) in preprocess.REGIONS.items():
        flat = preprocess.is_flat(kept, box)
        whole = region == 0
        for j, (i, end) in enumerate(zip(keep.tolist(), ends.tolist(), strict=True)):
            rows.append(FrameRecord(
                video_id=video_id, ts_start=float(pts[i]), ts_end=end, region=region,
                key=keys[region, j].tobytes(), flat=bool(flat[j]),
                phash=int(phash[j]) if whole and phash is not None else None,
                dhash=int(dhash[j]) if whole and dhash is not None else None,
                pdq=extra["pdq"][j].tobytes() if whole and "pdq" in extra else None,
                quality=int(extra["quality"][j]) if whole and "quality" in extra else None,
            ))
    return rows, keep


class DecodeSegment(beam.DoFn):
    """Decodes one time segment with FFmpeg and hashes its frames.

    With ``references``, the same decode also yields each frame at the verification size,
    and the kept whole-frame rows' pictures are stored as small grey JPEGs.
    """

    def __init__(self, hashers: Sequence[str], prune_d: int, timeout_s: float,
                 references: bool, max_memory_mb: int | None = decode.MAX_MEMORY_MB):
        self.max_memory_mb = max_memory_mb
        self.hashers = list(hashers)
        self.prune_d = prune_d
        self.timeout_s = timeout_s
        self.references = references
        self.frames_decoded = Metrics.counter("index", "frames_decoded")
        self.rows_kept = Metrics.counter("index", "rows_kept")
        self.decode_ms = Metrics.distribution("index", "segment_decode_ms")
        self.bytes_copied = Metrics.counter("index", "remote_bytes_copied")

    def setup(self) -> None:
        # Segments of one remote video share one local copy (keyed by the video id, which
        # changes with the content) instead of each copying the whole object.
        self._copies = io.LocalCopies()

    def teardown(self) -> None:
        self._copies.close()

    def process(self, segment: Segment) -> Iterator[tuple[int, SegmentResult]]:
        began = time.monotonic()
        pts_parts: list[np.ndarray] = []
        thumb_parts: list[np.ndarray] = []
        ref_parts: list[np.ndarray] = []
        error = stage = None
        copied = self._copies.bytes_copied
        try:
            path = self._copies.path(segment.uri, segment.video_id)
            for pts, thumbs, refs in self._decode(path, segment):
                pts_parts.append(pts)
                thumb_parts.append(preprocess.grey(thumbs))
                if refs is not None:
                    ref_parts.append(preprocess.grey(refs))
        except decode.DecodeError as e:
            error, stage = str(e), e.stage
        except OSError as e:
            error, stage = repr(e), "read"
        rows: list[FrameRecord] = []
        references: list[ReferenceRecord] = []
        n = sum(len(p) for p in pts_parts)
        if n:
            pts = np.concatenate(pts_parts)
            rows, keep = frame_rows(segment.video_id, pts, np.concatenate(thumb_parts),
                                    self.hashers, self.prune_d)
            if ref_parts:
                pictures = np.concatenate(ref_parts)
                references = [ReferenceRecord(segment.video_id, float(pts[i]),
                                              verify.encode_reference(pictures[i]))
                              for i in keep.tolist()]
        self.frames_decoded.inc(n)
        self.rows_kept.inc(len(rows))
        self.bytes_copied.inc(self._copies.bytes_copied - copied)
        self.decode_ms.update(int((time.monotonic() - began) * 1000))
        yield segment.video_id, SegmentResult(segment.start, n, rows, references, error, stage)

    def _decode(self, path: str, segment: Segment
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        if not self.references:
            for pts, thumbs in decode.decode_frames(path, segment.start, segment.end,
                                                    timeout_s=self.timeout_s,
                                                    max_memory_mb=self.max_memory_mb):
                yield pts, thumbs, None
            return
        yield from decode.decode_frames_with_reference(
            path, segment.start, segment.end, timeout_s=self.timeout_s,
            max_memory_mb=self.max_memory_mb,
            reference=verify.reference_size(segment.width, segment.height))


class FinaliseVideo(beam.DoFn):
    """One outcome per video: indexed (maybe with a warning) or dead-lettered, never both."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.indexed = Metrics.counter("index", "videos_indexed")
        self.failed = Metrics.counter("index", "videos_failed")

    def process(self, element: tuple[int, dict[str, list]]) -> Iterator[Any]:
        _, grouped = element
        (video,) = grouped["video"]
        segments: list[SegmentResult] = sorted(grouped["segments"], key=lambda s: s.start)
        errors = [s for s in segments if s.error]
        n_decoded = sum(s.n_decoded for s in segments)
        if n_decoded == 0:
            self.failed.inc()
            first = errors[0] if errors else None
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
                video.uri, first.error_stage if first else "decode",
                first.error if first else "no video frames decoded", self.run_id))
            return
        rows = [r for s in segments for r in s.rows]
        warning = None
        if errors:
            start = max(errors[0].start, video.start_time)
            warning = (f"{len(errors)} of {len(segments)} segments failed; the first, from "
                       f"{start:.3f}s: {errors[0].error}")
        self.indexed.inc()
        yield video._replace(n_frames_decoded=n_decoded, n_rows=len(rows), warning=warning)
        for row in rows:
            yield beam.pvalue.TaggedOutput(FRAMES, row)
        for reference in (r for s in segments for r in s.references):
            yield beam.pvalue.TaggedOutput(REFERENCES, reference)
