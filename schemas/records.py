"""The one truth for every table: a NamedTuple per record, its pyarrow schema beside it.

Beam moves the NamedTuples between steps (registered with ``RowCoder``); the Parquet
sinks write them with the explicit schema next to them, so a column never changes type
because one bundle happened to hold only nulls.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa


class VideoRecord(NamedTuple):
    """One indexed (or tombstoned) archive video; one row per video per ingest batch."""

    video_id: int
    uri: str
    sha256: str
    size: int
    generation: str  # mtime (local) or update time (gs://): the change-detection key
    start_time: float
    duration: float
    width: int  # as displayed: pixel aspect and display rotation applied
    height: int
    codec: str
    n_frames_decoded: int
    n_rows: int
    batch_id: str
    deleted: bool
    warning: str | None = None  # decoded in part (e.g. truncated): what was lost and why
    title: str | None = None
    source_url: str | None = None
    published: str | None = None
    rights: str | None = None
    # CRC32C (base64, as Cloud Storage reports it) of the bytes indexed, for objects: a
    # rewrite that keeps the content (storage class, metadata) is not a change.
    checksum: str | None = None
    # frames per second (the stream's average rate, as vPDQ numbers frames by it); None
    # when unknown (imported lists, indexes written before it was recorded)
    frame_rate: float | None = None


VIDEOS_SCHEMA = pa.schema(
    [
        ("video_id", pa.int64()),
        ("uri", pa.string()),
        ("sha256", pa.string()),
        ("size", pa.int64()),
        ("generation", pa.string()),
        ("start_time", pa.float64()),
        ("duration", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("codec", pa.string()),
        ("n_frames_decoded", pa.int64()),
        ("n_rows", pa.int64()),
        ("batch_id", pa.string()),
        ("deleted", pa.bool_()),
        ("warning", pa.string()),
        ("title", pa.string()),
        ("source_url", pa.string()),
        ("published", pa.string()),
        ("rights", pa.string()),
        ("checksum", pa.string()),
        ("frame_rate", pa.float64()),
    ]
)


class FrameRecord(NamedTuple):
    """A kept frame: its hashes at ``ts_start``, standing for the frames until ``ts_end``.

    ``region`` says which box of the frame was hashed (``transforms.preprocess.REGIONS``:
    0 is the whole frame, others are centre crops and caption bands that let partial posts
    match). ``key`` is the search hash (256-bit pHash); the whole-frame row also carries
    pHash, dHash and PDQ (with PDQ's quality) for exchange with other tools.
    """

    video_id: int
    ts_start: float
    ts_end: float
    region: int
    key: bytes  # 256-bit pHash of the region, 32 bytes, most significant bit first
    flat: bool  # the region is (nearly) uniform: a fade or a black gap, never a search key
    phash: int | None = None  # 64-bit pHash as uint64 (whole-frame rows only)
    dhash: int | None = None  # 64-bit dHash as uint64 (whole-frame rows only)
    pdq: bytes | None = None  # 256-bit PDQ in the order of Meta's hex (whole-frame rows)
    quality: int | None = None  # PDQ quality 0..100 (whole-frame rows)


FRAMES_SCHEMA = pa.schema(
    [
        ("video_id", pa.int64()),
        ("ts_start", pa.float64()),
        ("ts_end", pa.float64()),
        ("region", pa.int8()),
        ("key", pa.binary(32)),
        ("flat", pa.bool_()),
        ("phash", pa.uint64()),
        ("dhash", pa.uint64()),
        ("pdq", pa.binary(32)),
        ("quality", pa.int8()),
    ]
)


class ReferenceRecord(NamedTuple):
    """A kept whole-frame row's picture (grey JPEG, long side 320) for local-feature checks.

    Kept apart from ``frames`` so that the join loads only hashes; the verification stage
    reads these for the few candidates it re-checks. Each segment's pictures are one file
    (named like its frames file), sorted by time in small row groups, so the pictures of a
    few frames are read without reading the rest.
    """

    video_id: int
    ts_start: float
    jpeg: bytes


REFERENCES_SCHEMA = pa.schema(
    [
        ("video_id", pa.int64()),
        ("ts_start", pa.float64()),
        ("jpeg", pa.binary()),
    ]
)


class SegmentRecord(NamedTuple):
    """One decoded time segment of a video: what it yielded and where its rows are.

    The decode stage writes a segment's ``frames`` and ``references`` rows as it produces
    them (one file each, named by the video and segment); these small records are all that
    is grouped per video, and what the batch's shards are packed from.
    """

    video_id: int
    index: int  # the segment's ordinal in the video's plan
    start: float  # planned [start, end) in absolute pts (-inf / +inf at the ends)
    end: float
    n_decoded: int
    n_rows: int  # key rows written to ``frames_file``
    frames_file: str | None  # file name inside the batch's partition; None without rows
    references_file: str | None
    error: str | None = None
    error_stage: str | None = None


SEGMENTS_SCHEMA = pa.schema(
    [
        ("video_id", pa.int64()),
        ("index", pa.int32()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("n_decoded", pa.int64()),
        ("n_rows", pa.int64()),
        ("frames_file", pa.string()),
        ("references_file", pa.string()),
        ("error", pa.string()),
        ("error_stage", pa.string()),
    ]
)


class ShardRecord(NamedTuple):
    """A shard: frames files of one batch searched as one unit, at most ``shard_rows`` rows."""

    shard: int
    n_rows: int
    files: list[str]  # frames file names inside the batch's partition


SHARDS_SCHEMA = pa.schema(
    [
        ("shard", pa.int32()),
        ("n_rows", pa.int64()),
        ("files", pa.list_(pa.string())),
    ]
)


class DeadLetter(NamedTuple):
    """An input that did not reach the output, and why: the stage it failed at and the error."""

    uri: str
    stage: str
    error: str
    run_id: str


DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("stage", pa.string()),
        ("error", pa.string()),
        ("run_id", pa.string()),
    ]
)


QUERY_SIDECAR_FIELDS = ("post_url", "platform", "posted_at", "case_id")


class QueryRecord(NamedTuple):
    """Every input image exactly once per run: matched, no_match or failed (and why)."""

    query_uri: str
    query_sha256: str | None
    status: str  # matched | no_match | failed
    reason: str | None
    width: int | None
    height: int | None
    n_variants: int
    n_matches: int
    best_distance: int | None
    run_id: str
    post_url: str | None = None
    platform: str | None = None
    posted_at: str | None = None
    case_id: str | None = None


QUERIES_SCHEMA = pa.schema(
    [
        ("query_uri", pa.string()),
        ("query_sha256", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("n_variants", pa.int32()),
        ("n_matches", pa.int32()),
        ("best_distance", pa.int32()),
        ("run_id", pa.string()),
        ("post_url", pa.string()),
        ("platform", pa.string()),
        ("posted_at", pa.string()),
        ("case_id", pa.string()),
    ]
)


class MatchRecord(NamedTuple):
    """One span of one archive video that a query matched, ranked among the query's spans.

    ``ref_ts_s`` is the best frame; the true moment lies in ``[ref_ts_start_s, ref_ts_end_s]``
    (frames of a near-static shot are indistinguishable, so a span is the honest answer).
    """

    query_uri: str
    query_sha256: str
    ref_uri: str
    ref_video_id: int
    ref_ts_s: float
    ref_ts_start_s: float
    ref_ts_end_s: float
    distance: int
    hasher: str
    variant: str
    ref_region: str  # which box of the archive frame matched: full, centre85, top85, ...
    variants: str  # every query variant that matched inside the span, comma-separated
    score: float
    n_frames: int
    rank: int
    run_id: str
    verified: bool | None = None  # local-feature check outcome (None: not checked)
    inliers: int | None = None  # RANSAC inliers of that check
    post_url: str | None = None
    platform: str | None = None
    posted_at: str | None = None
    case_id: str | None = None
    ref_title: str | None = None
    ref_source_url: str | None = None
    ref_published: str | None = None


MATCHES_SCHEMA = pa.schema(
    [
        ("query_uri", pa.string()),
        ("query_sha256", pa.string()),
        ("ref_uri", pa.string()),
        ("ref_video_id", pa.int64()),
        ("ref_ts_s", pa.float64()),
        ("ref_ts_start_s", pa.float64()),
        ("ref_ts_end_s", pa.float64()),
        ("distance", pa.int32()),
        ("hasher", pa.string()),
        ("variant", pa.string()),
        ("ref_region", pa.string()),
        ("variants", pa.string()),
        ("score", pa.float64()),
        ("n_frames", pa.int32()),
        ("rank", pa.int32()),
        ("run_id", pa.string()),
        ("verified", pa.bool_()),
        ("inliers", pa.int32()),
        ("post_url", pa.string()),
        ("platform", pa.string()),
        ("posted_at", pa.string()),
        ("case_id", pa.string()),
        ("ref_title", pa.string()),
        ("ref_source_url", pa.string()),
        ("ref_published", pa.string()),
    ]
)


# Table names; each is also the tagged output of the steps that feed that table.
VIDEOS, FRAMES, REFERENCES, DEAD_LETTER = "videos", "frames", "references", "dead_letter"
SEGMENTS, SHARDS = "segments", "shards"
MATCHES, QUERIES = "matches", "queries"

# The tables of an index (``INDEX/<table>/batch=<id>/``) and of a match run
# (``OUT/<table>/run_date=<d>/run_id=<id>/``), each with its schema and record type.
INDEX_TABLES: dict[str, pa.Schema] = {
    VIDEOS: VIDEOS_SCHEMA, FRAMES: FRAMES_SCHEMA, REFERENCES: REFERENCES_SCHEMA,
    DEAD_LETTER: DEAD_LETTER_SCHEMA, SEGMENTS: SEGMENTS_SCHEMA, SHARDS: SHARDS_SCHEMA}
INDEX_RECORDS: dict[str, type] = {
    VIDEOS: VideoRecord, FRAMES: FrameRecord, REFERENCES: ReferenceRecord,
    DEAD_LETTER: DeadLetter, SEGMENTS: SegmentRecord, SHARDS: ShardRecord}
MATCH_TABLES: dict[str, pa.Schema] = {
    MATCHES: MATCHES_SCHEMA, QUERIES: QUERIES_SCHEMA, DEAD_LETTER: DEAD_LETTER_SCHEMA}

# FrameRecord keeps the default coder: its uint64 hashes do not fit RowCoder's int64.
for _record in (VideoRecord, DeadLetter, QueryRecord, MatchRecord, SegmentRecord):
    beam.coders.registry.register_coder(_record, beam.coders.RowCoder)
