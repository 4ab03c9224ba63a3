"""One outcome per video: its segments' records gathered into a row or a dead letter, and
the video's metadata from the sidecar (``AttachVideoMetadata``, a side input)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas.records import DEAD_LETTER, SEGMENTS, DeadLetter, SegmentRecord, VideoRecord
from transforms.io import storage

VIDEO_SIDECAR_FIELDS = ("title", "source_url", "published", "rights")


class FinaliseVideo(beam.DoFn):
    """One outcome per video: indexed (maybe with a warning) or dead-lettered, never both.

    A video whose segments decoded no frame at all wrote no rows; one that decoded in part
    is indexed with a warning saying which segments failed. Its ``SegmentRecord``s go to
    the batch's ``segments`` table, from which the batch's shards are packed.
    """

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.indexed = Metrics.counter("index", "videos_indexed")
        self.failed = Metrics.counter("index", "videos_failed")

    def process(self, element: tuple[int, dict[str, list]]) -> Iterator[Any]:
        _, grouped = element
        (video,) = grouped["video"]
        segments: list[SegmentRecord] = sorted(grouped["segments"], key=lambda s: s.index)
        errors = [s for s in segments if s.error]
        n_decoded = sum(s.n_decoded for s in segments)
        if n_decoded == 0:
            self.failed.inc()
            first = errors[0] if errors else None
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(
                video.uri, first.error_stage if first else "decode",
                first.error if first else "no video frames decoded", self.run_id))
            return
        warning = None
        if errors:
            start = max(errors[0].start, video.start_time)
            warning = (f"{len(errors)} of {len(segments)} segments failed; the first, from "
                       f"{start:.3f}s: {errors[0].error}")
        self.indexed.inc()
        yield video._replace(n_frames_decoded=n_decoded,
                             n_rows=sum(s.n_rows for s in segments), warning=warning)
        for segment in segments:
            yield beam.pvalue.TaggedOutput(SEGMENTS, segment)


class AttachVideoMetadata(beam.DoFn):
    """An indexed ``VideoRecord`` with its sidecar row's fields (``VIDEO_SIDECAR_FIELDS``),
    looked up by URI, then by file name, in the side input."""

    def process(self, video: VideoRecord, sidecar) -> Iterator[VideoRecord]:
        meta = storage.sidecar_lookup(sidecar, video.uri)
        yield video._replace(**{f: meta.get(f) for f in VIDEO_SIDECAR_FIELDS}) if meta \
            else video
