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

import collections
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
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
from transforms.hashing.pdq import PdqSampler
from transforms.hashing.pruning import Pruner
from transforms.hashing.regions import REGION_BOXES, WHOLE_FRAME
from transforms.index import batches
from transforms.index.changes import video_id_for
from transforms.io import parquet, storage
from transforms.media import decode, preprocess
from transforms.media.pictures import encode_reference, reference_size

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
            width=info.display_size[0], height=info.display_size[1], codec=info.codec,
            n_frames_decoded=0,
            n_rows=0, batch_id=self.batch_id, deleted=False,
            title=None, source_url=None, published=None, rights=None,  # FinaliseVideo's
            checksum=checksum, frame_rate=info.frame_rate or None,
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


class SegmentRows:
    """A segment's rows (``FRAMES_SCHEMA``) and stored pictures, built a batch at a time as
    FFmpeg decodes, so hashing runs while FFmpeg decodes the next frames.

    Every decoded frame gets the key (256-bit pHash) and flat test of every region, since
    pruning needs them (``transforms.hashing.pruning``); everything else -- pHash, dHash,
    PDQ and the stored picture -- only the frames kept, which is what keeps indexing at the
    pace of decoding. PDQ comes from the frame's grey picture through ``PdqSampler``, i.e. Meta's
    PDQ of the full-size frame (``transforms.hashing.pdq``), not from the thumbnail.
    Reference JPEGs are encoded on ``encoder`` (a thread: OpenCV releases the GIL) while the
    next batch is hashed. Rows come region by region, each in time order.
    """

    def __init__(self, video_id: int, hashers: Sequence[str], prune_d: int,
                 source: tuple[int, int], picture: tuple[int, int],
                 encoder: Executor | None = None) -> None:
        self.video_id = video_id
        self.thumb_hashers = [h for h in hashers if h != "pdq"]
        self.pdq = PdqSampler(source, picture) if "pdq" in hashers else None
        self.pruner = Pruner(prune_d)
        self.encoder = encoder
        self.decoded = 0
        self._parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
        self._jpegs: list[Future] = []

    def feed(self, batch: decode.DecodedBatch) -> None:
        """Hashes one batch of decoded frames (in time order, following the previous one)."""
        thumbs = batch.thumbs
        keys = hashes.phash256_regions(thumbs, REGION_BOXES)
        flat = np.stack([preprocess.is_flat(thumbs, box) for box in REGION_BOXES])
        keep = self.pruner.feed(batch.pts, keys, flat)
        self.decoded += len(thumbs)
        if not len(keep):
            return
        kept = thumbs[keep]
        parts = self._parts
        parts["keys"].append(keys[:, keep])
        parts["flat"].append(flat[:, keep])
        for name, codes in hashes.hash_batch(kept, self.thumb_hashers).items():
            parts[name].append(codes)
        pictures = batch.pictures(keep)
        if self.pdq is not None:
            codes, quality = self.pdq.hash(pictures)
            parts["pdq"].append(codes)
            parts["quality"].append(quality)
        if self.encoder is not None:
            self._jpegs.append(self.encoder.submit(_encode_all, pictures))

    def table(self) -> pa.Table:
        """The segment's rows so far."""
        parts = {name: np.concatenate(arrays, axis=1 if name in ("keys", "flat") else 0)
                 for name, arrays in self._parts.items()}
        n, regions = len(self.pruner.kept), len(REGION_BOXES)
        whole = np.repeat(np.arange(regions) == WHOLE_FRAME, n)

        def on_whole_frame_rows(values: np.ndarray) -> np.ndarray:
            spread = np.zeros((regions * n, *values.shape[1:]), dtype=values.dtype)
            spread[whole] = values
            return spread

        def whole_frame_only(name: str, arrow_type: pa.DataType, convert=None) -> pa.Array:
            if name not in parts:
                return pa.nulls(regions * n, arrow_type)
            values = convert(parts[name]) if convert else parts[name]
            return pa.array(on_whole_frame_rows(values), arrow_type, mask=~whole)

        keys = parts["keys"].reshape(regions * n, -1) if n else np.zeros((0, 32), np.uint8)
        flat = parts["flat"].reshape(-1) if n else np.zeros(0, bool)
        return pa.table({
            "video_id": np.full(regions * n, self.video_id, dtype=np.int64),
            "ts_start": np.tile(self.pruner.kept_pts(), regions),
            "ts_end": np.tile(self.pruner.ends(), regions),
            "region": np.repeat(np.arange(regions, dtype=np.int8), n),
            "key": _fixed_binary(keys),
            "flat": flat,
            "phash": whole_frame_only("phash", pa.uint64(), hashes.to_uint64),
            "dhash": whole_frame_only("dhash", pa.uint64(), hashes.to_uint64),
            "pdq": (_fixed_binary(on_whole_frame_rows(parts["pdq"]), whole) if "pdq" in parts
                    else pa.nulls(regions * n, pa.binary(32))),
            "quality": whole_frame_only("quality", pa.int8(), lambda q: q.astype(np.int8)),
        }, schema=FRAMES_SCHEMA)

    def references(self) -> pa.Table:
        """Stored pictures of the kept frames (``REFERENCES_SCHEMA``), in time order."""
        jpegs = [data for future in self._jpegs for data in future.result()]
        return pa.table({
            "video_id": np.full(len(jpegs), self.video_id, dtype=np.int64),
            "ts_start": self.pruner.kept_pts(),
            "jpeg": jpegs,
        }, schema=REFERENCES_SCHEMA)


def _encode_all(pictures: np.ndarray) -> list[bytes]:
    return [encode_reference(picture) for picture in pictures]


class DecodeSegment(beam.DoFn):
    """Decodes one time segment with FFmpeg, hashes its frames and writes its rows.

    One FFmpeg process decodes each frame once, to a grey picture at the stored size (long
    side 320: the reference picture and PDQ's input) and the canonical thumbnail (the key's
    input); ``SegmentRows`` hashes each batch while FFmpeg decodes the next, and with
    ``references`` the kept frames' pictures are stored as small grey JPEGs, encoded on a
    thread of their own. The segment's files have names fixed by the video and the segment
    (a retried bundle rewrites the same files) and appear whole or not at all. Emits
    ``(video_id, SegmentRecord)``.
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
        self._encoder: ThreadPoolExecutor | None = None

    def setup(self) -> None:
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="reference-jpeg")

    def teardown(self) -> None:
        if self._encoder is not None:
            self._encoder.shutdown(wait=True)
            self._encoder = None

    def process(self, segment: Segment) -> Iterator[tuple[int, SegmentRecord]]:
        began = time.monotonic()
        if self.references and self._encoder is None:
            self.setup()
        picture = reference_size(segment.width, segment.height)
        rows = SegmentRows(segment.video_id, self.hashers, self.prune_d,
                           (segment.width, segment.height), picture,
                           self._encoder if self.references else None)
        error = stage = None
        try:
            path = segment.uri
            if storage.is_remote(segment.uri):
                copy, copied = storage.local_copies().get(segment.uri, segment.version)
                self.bytes_copied.inc(copied)
                path = copy.path
            for batch in decode.decode_frames(path, segment.start, segment.end, picture=picture,
                                              timeout_s=self.timeout_s,
                                              max_memory_mb=self.max_memory_mb):
                rows.feed(batch)
        except decode.DecodeError as e:
            error, stage = str(e), e.stage
        except OSError as e:
            error, stage = repr(e), "read"
        n = rows.decoded
        n_rows, frames_file, references_file = 0, None, None
        if n:
            table = rows.table()
            n_rows = table.num_rows
            frames_file = batches.segment_file(segment.video_id, segment.index)
            parquet.write_arrow(f"{partition_dir(self.index_dir, FRAMES, self.batch_id)}/"
                                f"{frames_file}", table)
            if self.references:
                references_file = frames_file
                parquet.write_arrow(
                    f"{partition_dir(self.index_dir, REFERENCES, self.batch_id)}/"
                    f"{references_file}", rows.references(),
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
