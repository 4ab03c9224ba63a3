"""The steps between change detection and finalisation: probe, plan, decode and hash.

Probe (sha256 + ffprobe) → time segments, reshuffled so one long video keeps every worker
busy → decode + hash + prune per segment. ``transforms.index.finalise`` then turns each
video's segments into a ``VideoRecord`` with its rows, or a ``DeadLetter``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from schemas.records import DEAD_LETTER, DeadLetter, FrameRecord, ReferenceRecord, VideoRecord
from transforms.hashing import hashes
from transforms.hashing.pruning import prune
from transforms.hashing.regions import REGION_BOXES, REGIONS, WHOLE_FRAME
from transforms.index.changes import video_id_for
from transforms.io import storage
from transforms.media import decode, pictures, preprocess

PROGRESS = logging.getLogger("framematch.progress")  # one line per decoded segment


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
            sha256, n = storage.sha256_of(uri)
            self.bytes_read.inc(n)
            with storage.local_path(uri) as path:
                info = decode.probe(path, timeout_s=self.probe_timeout_s,
                                    max_memory_mb=self.max_memory_mb)
        except decode.DecodeError as e:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER,
                                           DeadLetter(uri, e.stage, str(e), self.run_id))
            return
        except OSError as e:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER,
                                           DeadLetter(uri, "read", repr(e), self.run_id))
            return
        meta = storage.sidecar_lookup(self.sidecar, uri)
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
    key = hashes.phash256_regions(thumbs, [preprocess.FULL])[0]
    keep, ends = prune(pts, key, preprocess.is_flat(thumbs), prune_d)
    kept = thumbs[keep]
    extra = hashes.hash_batch(kept, hashers) if hashers else {}
    phash = hashes.to_uint64(extra["phash"]) if "phash" in extra else None
    dhash = hashes.to_uint64(extra["dhash"]) if "dhash" in extra else None
    keys = hashes.phash256_regions(kept, REGION_BOXES)
    rows: list[FrameRecord] = []
    for region, (_, box) in REGIONS.items():
        flat = preprocess.is_flat(kept, box)
        whole = region == WHOLE_FRAME
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
        self._copies = storage.LocalCopies()

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
                stored = np.concatenate(ref_parts)
                references = [ReferenceRecord(segment.video_id, float(pts[i]),
                                              pictures.encode_reference(stored[i]))
                              for i in keep.tolist()]
        self.frames_decoded.inc(n)
        self.rows_kept.inc(len(rows))
        self.bytes_copied.inc(self._copies.bytes_copied - copied)
        elapsed = time.monotonic() - began
        self.decode_ms.update(int(elapsed * 1000))
        PROGRESS.info("decoded %s [%s, %s): %d frames, %d rows in %.1f s%s", segment.uri,
                      segment.start, segment.end, n, len(rows), elapsed,
                      f" ({stage}: {error})" if error else "")
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
            reference=pictures.reference_size(segment.width, segment.height))


