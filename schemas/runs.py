"""Records about the results rather than in them: one row per job run, one per analyst verdict.

Same convention as ``schemas/records.py``: a NamedTuple and its pyarrow schema side by side.
Neither travels through a Beam pipeline (a run record is written once the pipeline is done, a
verdict by a person), so no coder is registered.

``runs`` lets any output row be traced to the run that wrote it: which code, which index
batches, which thresholds, and what went in and came out. Count columns that do not apply to
a job are null (an index run has no ``n_matched``; a match run has no ``n_frame_rows``).
"""

from __future__ import annotations

import datetime
from typing import NamedTuple

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")


class RunRecord(NamedTuple):
    run_id: str
    job: str  # index | match | stream
    started: datetime.datetime  # timezone-aware, UTC
    ended: datetime.datetime
    runner: str
    framematch_version: str
    preprocess_version: int
    index_dir: str
    index_batches: list[str]  # the live index batches the run read (index: after it)
    argv: list[str]
    n_inputs: int  # images that entered (match: listed + re-matched) or files listed (index)
    n_dead_letters: int
    threshold: int | None = None
    prune_d: int | None = None
    radius: int | None = None  # threshold + prune_d: what the search actually used
    top_k: int | None = None
    n_matched: int | None = None
    n_no_match: int | None = None
    n_failed: int | None = None
    n_match_rows: int | None = None
    n_videos: int | None = None  # indexed in this batch
    n_unchanged: int | None = None
    n_tombstones: int | None = None
    n_frame_rows: int | None = None
    n_rematched: int | None = None  # match: earlier unmatched images searched again (of n_inputs)


RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("started", UTC_MICROS),
        ("ended", UTC_MICROS),
        ("runner", pa.string()),
        ("framematch_version", pa.string()),
        ("preprocess_version", pa.int32()),
        ("index_dir", pa.string()),
        ("index_batches", pa.list_(pa.string())),
        ("argv", pa.list_(pa.string())),
        ("n_inputs", pa.int64()),
        ("n_dead_letters", pa.int64()),
        ("threshold", pa.int32()),
        ("prune_d", pa.int32()),
        ("radius", pa.int32()),
        ("top_k", pa.int32()),
        ("n_matched", pa.int64()),
        ("n_no_match", pa.int64()),
        ("n_failed", pa.int64()),
        ("n_match_rows", pa.int64()),
        ("n_videos", pa.int64()),
        ("n_unchanged", pa.int64()),
        ("n_tombstones", pa.int64()),
        ("n_frame_rows", pa.int64()),
        ("n_rematched", pa.int64()),
    ]
)

VERDICTS = ("confirmed", "rejected")


class VerdictRecord(NamedTuple):
    """An analyst's judgement of one (posted image, archive video) pair; the latest one counts.

    Keyed by the image's sha256, not its URI, so a verdict holds for every re-post of the
    same bytes; ``query_uri`` records which copy the analyst was looking at.
    """

    query_sha256: str
    query_uri: str
    ref_uri: str
    verdict: str  # confirmed | rejected
    analyst: str
    note: str | None
    at: datetime.datetime  # timezone-aware, UTC


VERDICTS_SCHEMA = pa.schema(
    [
        ("query_sha256", pa.string()),
        ("query_uri", pa.string()),
        ("ref_uri", pa.string()),
        ("verdict", pa.string()),
        ("analyst", pa.string()),
        ("note", pa.string()),
        ("at", UTC_MICROS),
    ]
)
