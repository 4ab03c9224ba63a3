"""The one truth for every table: a NamedTuple per record, its pyarrow schema beside it.

Beam moves the NamedTuples between steps (registered with ``RowCoder``); the Parquet
sinks write them with the explicit schema next to them, so a column never changes type
because one bundle happened to hold only nulls.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam
import pyarrow as pa


class VideoRecord(NamedTuple):
    """One indexed (or tombstoned) archive video; one row per video per ingest batch."""

    video_id: int
    uri: str
    sha256: str
    size: int
    generation: str  # mtime (local) or object generation (gs://): the change-detection key
    start_time: float
    duration: float
    width: int
    height: int
    codec: str
    n_frames_decoded: int
    n_rows: int
    batch_id: str
    deleted: bool
    warning: Optional[str] = None  # decoded in part (e.g. truncated): what was lost and why
    title: Optional[str] = None
    source_url: Optional[str] = None
    published: Optional[str] = None
    rights: Optional[str] = None


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
    ]
)


class FrameRecord(NamedTuple):
    """A kept frame: the hashes of the frame at ``ts_start``, standing for it until ``ts_end``.

    ``crop`` is the percentage of the frame (centred) the hashes were taken from: 100 for
    the whole frame, smaller for the reference-side centre crops that let cropped posts match.
    """

    video_id: int
    ts_start: float
    ts_end: float
    crop: int
    phash: Optional[int]  # 64-bit pHash as uint64 (None when the hasher was not selected)
    dhash: Optional[int]  # 64-bit dHash as uint64
    pdq: Optional[bytes]  # 256-bit PDQ, 32 bytes in the order of Meta's hex
    quality: int  # PDQ quality 0..100; low means flat or featureless
    flat: bool  # grey standard deviation under the flat threshold: never a search key


FRAMES_SCHEMA = pa.schema(
    [
        ("video_id", pa.int64()),
        ("ts_start", pa.float64()),
        ("ts_end", pa.float64()),
        ("crop", pa.int8()),
        ("phash", pa.uint64()),
        ("dhash", pa.uint64()),
        ("pdq", pa.binary(32)),
        ("quality", pa.int8()),
        ("flat", pa.bool_()),
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


def to_arrow_dict(record: NamedTuple) -> dict:
    """A record as the dict ``WriteToParquet`` expects (uint64 values stay Python ints)."""
    return record._asdict()


# FrameRecord keeps the default coder: its uint64 hashes do not fit RowCoder's int64.
for _record in (VideoRecord, DeadLetter):
    beam.coders.registry.register_coder(_record, beam.coders.RowCoder)
