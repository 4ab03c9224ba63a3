"""Answers: every input URI leaves as exactly one ``QueryRecord``, matched ones with their
ranked ``MatchRecord``s, failed ones also as a ``DeadLetter``; the post's metadata from the
sidecar is attached last (``AttachPostMetadata``), from a side input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas.records import (
    DEAD_LETTER,
    QUERIES,
    QUERY_SIDECAR_FIELDS,
    DeadLetter,
    MatchRecord,
    QueryRecord,
)
from transforms.io import storage
from transforms.search.query import Candidates


def failed(uri: str, sha256: str | None, stage: str, error: str, run_id: str
           ) -> Iterator[Any]:
    """A failed input: its QueryRecord and its dead letter."""
    yield beam.pvalue.TaggedOutput(QUERIES, query_record(
        uri, sha256, "failed", error, None, None, 0, 0, None, run_id))
    yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(uri, stage, error, run_id))


def query_record(uri: str, sha256: str | None, status: str, reason: str | None,
                 width: int | None, height: int | None, n_variants: int, n_matches: int,
                 best_distance: int | None, run_id: str) -> QueryRecord:
    return QueryRecord(uri, sha256, status, reason, width, height, n_variants, n_matches,
                       best_distance, run_id)


class AnswerQueries(beam.DoFn):
    """Candidates → one ``QueryRecord`` per URI and its ranked ``MatchRecord``s."""

    def __init__(self, radius: int, run_id: str):
        self.radius = radius
        self.run_id = run_id
        self.matched = Metrics.counter("match", "queries_matched")
        self.unmatched = Metrics.counter("match", "queries_no_match")

    def process(self, candidates: Candidates) -> Iterator[Any]:
        query, spans = candidates.query, candidates.spans
        if not len(query.codes):
            status, reason = "no_match", "flat or featureless image: no usable hash"
        elif spans:
            status, reason = "matched", None
        else:
            status, reason = "no_match", f"nothing within {self.radius} bits"
        for uri in query.uris:
            (self.matched if spans else self.unmatched).inc()
            record = query_record(uri, query.sha256, status, reason, query.width, query.height,
                                  query.n_variants, len(spans),
                                  spans[0].distance if spans else None, self.run_id)
            yield beam.pvalue.TaggedOutput(QUERIES, record)
            for rank, span in enumerate(spans, start=1):
                video = span.video
                yield MatchRecord(
                    query_uri=uri, query_sha256=query.sha256, ref_uri=video["uri"],
                    ref_video_id=span.video_id, ref_ts_s=span.ts_best,
                    ref_ts_start_s=span.ts_start, ref_ts_end_s=span.ts_end,
                    distance=span.distance, hasher=span.hasher, variant=span.variant,
                    ref_region=span.region, variants=",".join(span.variants), score=span.score,
                    n_frames=span.n_frames, rank=rank, run_id=self.run_id,
                    verified=span.verified, inliers=span.inliers,
                    ref_title=video.get("title"), ref_source_url=video.get("source_url"),
                    ref_published=video.get("published"),
                )


class AttachPostMetadata(beam.DoFn):
    """A ``QueryRecord`` or ``MatchRecord`` with the sidecar's fields of its post
    (``QUERY_SIDECAR_FIELDS``), looked up by URI, then by file name, in the side input."""

    def process(self, record, sidecar) -> Iterator[Any]:
        meta = storage.sidecar_lookup(sidecar, record.query_uri)
        yield record._replace(**{f: meta.get(f) for f in QUERY_SIDECAR_FIELDS}) if meta \
            else record
