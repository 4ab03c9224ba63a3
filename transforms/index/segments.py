"""The steps between change detection and finalisation: probe, plan, decode, hash and write.

Probe (sha256 + ffprobe) → time segments → decode + hash + prune per segment, whose rows and
pictures are written to the batch's files as soon as they exist (``batches.segment_file``):
nothing bigger than a ``SegmentRecord`` (a few numbers) travels on to
``transforms.index.finalise``, which turns each video's segments into its ``VideoRecord``
or a ``DeadLetter``.

Local videos' segments are reshuffled, so one long video keeps every worker busy. A remote
video is downloaded once per job: the probe copies it to local disk (``LocalCopies``, one per
process), takes its sha256 and CRC32C from that download, and its segments are decoded on
the same worker from that copy (the job does not reshuffle them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from schemas.manifest import partition_dir
from schemas.records import (
    DEAD_LETTER,
    FRAMES,
    FRAMES_SCHEMA,
    REFERENCES,
    REFERENCES_SCHEMA,
    DeadLetter,
    SegmentRecord,
    VideoRecord,
)
from transforms.hashing import hashes
from transforms.hashing.pruning import prune
from transforms.hashing.regions import REGION_BOXES, WHOLE_FRAME
from transforms.index import batches
from transforms.index.changes import video_id_for
from transforms.io import parquet, storage
from transforms.media import decode, pictures, preprocess

PROGRESS = logging.getLogger("framematch.progress")  # one line per decoded segment


class Segment(NamedTuple):
    video_id: int
    uri: str
    version: str  # the video's generation: which download of a remote object to decode
    index: int  # ordinal in the video's plan
    start: float
    end: float
    width: int
    height: int


class ProbeVideo(beam.DoFn):
    """Reads a new file once for its sha256 (and, remote, CRC32C), then asks ffprobe about it."""

    def __init__(self, batch_id: str, run_id: str, probe_timeout_s: float,
                 max_memory_mb: int | None = decode.MAX_MEMORY_MB):
        self.max_memory_mb = max_memory_mb
        self.batch_id = batch_id
        self.run_id = run_id
        self.probe_timeout_s = probe_timeout_s
        self.bytes_read = Metrics.counter("index", "bytes_read")
        self.bytes_copied = Metrics.counter("index", "remote_bytes_copied")
        self.failed = Metrics.counter("index", "videos_failed")

    def process(self, element: tuple[str, int, str]) -> Iterator[Any]:
        uri, size, generation = element
        checksum = None
        try:
            if storage.is_remote(uri):
                copy, copied = storage.local_copies().get(uri, generation)
                self.bytes_copied.inc(copied)
                path, sha256, checksum, n = copy.path, copy.sha256, copy.crc32c, copy.size
            else:
                (sha256, n), path = storage.sha256_of(uri), uri
            self.bytes_read.inc(n)
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
        yield VideoRecord(
            video_id=video_id_for(uri, sha256), uri=uri, sha256=sha256, size=size,
            generation=generation, start_time=info.start_time, duration=info.duration,
            width=info.width, height=info.height, codec=info.codec, n_frames_decoded=0,
            n_rows=0, batch_id=self.batch_id, deleted=False,
            title=None, source_url=None, published=None, rights=None,  # FinaliseVideo's
            checksum=checksum,
        )


def plan_segments(video: VideoRecord, segment_s: float) -> list[Segment]:
    info = decode.VideoInfo(video.start_time, video.duration, video.width, video.height,
                            video.codec)
    return [Segment(video.video_id, video.uri, video.generation, i, s, e, video.width,
                    video.height)
            for i, (s, e) in enumerate(decode.plan_segments(info, segment_s))]


def _fixed_binary(codes: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """(N, B) uint8 codes as a fixed-size binary column (null where ``valid`` is False)."""
    n, width = codes.shape
    buffers = [None, pa.py_buffer(np.ascontiguousarray(codes).tobytes())]
    if valid is not None and not valid.all():
        buffers[0] = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, buffers)


def frame_table(video_id: int, pts: np.ndarray, thumbs: np.ndarray, hashers: Sequence[str],
                prune_d: int) -> tuple[pa.Table, np.ndarray]:
    """The rows of one segment (``FRAMES_SCHEMA``), and the indices of the kept frames.

    A frame is kept where the whole frame's key moved (``prune``); the key of the whole
    frame is computed for every decoded frame, since pruning needs it, everything else
    (the other regions' keys, pHash, dHash, PDQ) only for the frames kept, which is what
    keeps indexing close to the speed of decoding. Rows come region by region, each in time
    order; built column by column, not row by row.
    """
    key = hashes.phash256_regions(thumbs, [preprocess.FULL])[0]
    keep, ends = prune(pts, key, preprocess.is_flat(thumbs), prune_d)
    kept = thumbs[keep]
    n, regions = len(keep), len(REGION_BOXES)
    extra = hashes.hash_batch(kept, hashers) if hashers else {}
    keys = hashes.phash256_regions(kept, REGION_BOXES).reshape(regions * n, -1)
    whole = np.repeat(np.arange(regions) == WHOLE_FRAME, n)

    def on_whole_frame_rows(values: np.ndarray) -> np.ndarray:
        spread = np.zeros((regions * n, *values.shape[1:]), dtype=values.dtype)
        spread[whole] = values
        return spread

    def whole_frame_only(values: np.ndarray | None, arrow_type: pa.DataType) -> pa.Array:
        if values is None:
            return pa.nulls(regions * n, arrow_type)
        return pa.array(on_whole_frame_rows(values), arrow_type, mask=~whole)

    pdq = extra.get("pdq")
    table = pa.table({
        "video_id": np.full(regions * n, video_id, dtype=np.int64),
        "ts_start": np.tile(pts[keep].astype(np.float64), regions),
        "ts_end": np.tile(ends, regions),
        "region": np.repeat(np.arange(regions, dtype=np.int8), n),
        "key": _fixed_binary(keys),
        "flat": np.concatenate([preprocess.is_flat(kept, box) for box in REGION_BOXES]),
        "phash": whole_frame_only(hashes.to_uint64(extra["phash"]) if "phash" in extra
                                  else None, pa.uint64()),
        "dhash": whole_frame_only(hashes.to_uint64(extra["dhash"]) if "dhash" in extra
                                  else None, pa.uint64()),
        "pdq": (pa.nulls(regions * n, pa.binary(32)) if pdq is None
                else _fixed_binary(on_whole_frame_rows(pdq), whole)),
        "quality": whole_frame_only(extra["quality"].astype(np.int8) if "quality" in extra
                                    else None, pa.int8()),
    }, schema=FRAMES_SCHEMA)
    return table, keep


def reference_table(video_id: int, pts: np.ndarray, stored: np.ndarray) -> pa.Table:
    """Stored pictures of kept frames (``REFERENCES_SCHEMA``), in time order."""
    return pa.table({
        "video_id": np.full(len(pts), video_id, dtype=np.int64),
        "ts_start": pts.astype(np.float64),
        "jpeg": [pictures.encode_reference(picture) for picture in stored],
    }, schema=REFERENCES_SCHEMA)


class DecodeSegment(beam.DoFn):
    """Decodes one time segment with FFmpeg, hashes its frames and writes its rows.

    With ``references``, the same decode also yields each frame at the verification size,
    and the kept frames' pictures are stored as small grey JPEGs. The segment's files have
    names fixed by the video and the segment (a retried bundle rewrites the same files) and
    appear whole or not at all. Emits ``(video_id, SegmentRecord)``.
    """

    def __init__(self, index_dir: str, batch_id: str, hashers: Sequence[str], prune_d: int,
                 timeout_s: float, references: bool,
                 max_memory_mb: int | None = decode.MAX_MEMORY_MB):
        self.index_dir = index_dir
        self.batch_id = batch_id
        self.max_memory_mb = max_memory_mb
        self.hashers = list(hashers)
        self.prune_d = prune_d
        self.timeout_s = timeout_s
        self.references = references
        self.frames_decoded = Metrics.counter("index", "frames_decoded")
        self.rows_kept = Metrics.counter("index", "rows_kept")
        self.decode_ms = Metrics.distribution("index", "segment_decode_ms")
        self.bytes_copied = Metrics.counter("index", "remote_bytes_copied")

    def process(self, segment: Segment) -> Iterator[tuple[int, SegmentRecord]]:
        began = time.monotonic()
        pts_parts: list[np.ndarray] = []
        thumb_parts: list[np.ndarray] = []
        ref_parts: list[np.ndarray] = []
        error = stage = None
        try:
            path = segment.uri
            if storage.is_remote(segment.uri):
                copy, copied = storage.local_copies().get(segment.uri, segment.version)
                self.bytes_copied.inc(copied)
                path = copy.path
            for pts, thumbs, refs in self._decode(path, segment):
                pts_parts.append(pts)
                thumb_parts.append(preprocess.grey(thumbs))
                if refs is not None:
                    ref_parts.append(preprocess.grey(refs))
        except decode.DecodeError as e:
            error, stage = str(e), e.stage
        except OSError as e:
            error, stage = repr(e), "read"
        n = sum(len(p) for p in pts_parts)
        n_rows, frames_file, references_file = 0, None, None
        if n:
            pts = np.concatenate(pts_parts)
            table, keep = frame_table(segment.video_id, pts, np.concatenate(thumb_parts),
                                      self.hashers, self.prune_d)
            n_rows = table.num_rows
            frames_file = batches.segment_file(segment.video_id, segment.index)
            parquet.write_arrow(f"{partition_dir(self.index_dir, FRAMES, self.batch_id)}/"
                                f"{frames_file}", table)
            if ref_parts:
                references_file = frames_file
                parquet.write_arrow(
                    f"{partition_dir(self.index_dir, REFERENCES, self.batch_id)}/"
                    f"{references_file}",
                    reference_table(segment.video_id, pts[keep], np.concatenate(ref_parts)[keep]),
                    row_group_size=batches.REFERENCE_ROW_GROUP)
        self.frames_decoded.inc(n)
        self.rows_kept.inc(n_rows)
        elapsed = time.monotonic() - began
        self.decode_ms.update(int(elapsed * 1000))
        PROGRESS.info("decoded %s [%s, %s): %d frames, %d rows in %.1f s%s", segment.uri,
                      segment.start, segment.end, n, n_rows, elapsed,
                      f" ({stage}: {error})" if error else "")
        yield segment.video_id, SegmentRecord(
            segment.video_id, segment.index, segment.start, segment.end, n, n_rows,
            frames_file, references_file, error, stage)

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
