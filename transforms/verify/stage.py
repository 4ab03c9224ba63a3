"""The verification stage: re-check a query's best candidates with local features.

Hashes cannot see through rotations, heavy or off-centre crops, or pads they were not
trimmed of. For the first ``k`` spans the hashes found, and for queries the hashes could
not place at all the ``k`` nearest rows, the stored reference picture of the span's best
frame is compared with the query by ORB features and a RANSAC similarity
(``transforms.verify.local_features``). A span is kept when the check accepts it, dropped
when it rejects it, and kept unverified when the check cannot judge (no stored picture, or too few
features on either side: flat or tiny pictures). A hash match within ``SURE_DISTANCE``
bits is kept even when the check rejects it (marked ``verified = False``): local features
miss on smooth or fast-changing pictures that the hashes place well.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from transforms.io import parquet
from transforms.media import pictures
from transforms.search.query import Candidates
from transforms.search.spans import Span, rank_key
from transforms.verify import local_features

FEATURE_CACHE = 4096  # reference pictures' features kept per worker process
REFINE_S = 3.0  # a rescued span's time is re-chosen among stored frames this close to it
REFINE_N = 4  # at most this many neighbouring frames are checked for it
SURE_DISTANCE = 24  # of 256 key bits: a hash match this close stands even if the check fails


def verified_score(hash_score: float, inliers: int) -> float:
    """A verified span is at least as sure as its inliers say (25 inliers: 0.7, 75+: 0.9+)."""
    return max(hash_score, min(1.0, 0.6 + inliers / 250))


class PictureRequest(NamedTuple):
    """The stored pictures of one video between two times that one query's check reads."""

    sha256: str
    video_id: int
    start: float
    end: float


def picture_requests(candidates: Candidates, k: int
                     ) -> Iterator[tuple[str, PictureRequest]]:
    """``(references file, request)`` for every picture checking these candidates reads:
    the best frame of the first ``k`` spans, and the stored frames within ``REFINE_S`` of
    the first ``k`` rescue candidates (among which ``_refine`` re-chooses the moment)."""
    sha256 = candidates.query.sha256
    for span in candidates.spans[:k]:
        if span.frames:
            ts, file = span.frames[0]
            yield file, PictureRequest(sha256, span.video_id, ts, ts)
    for span in candidates.rescue[:k]:
        if span.frames:
            ts, file = span.frames[0]
            yield file, PictureRequest(sha256, span.video_id, ts - REFINE_S, ts + REFINE_S)


class ReadPictures(beam.DoFn):
    """``(references file, requests)`` → ``(sha256, [(video_id, pts, jpeg), ...])``.

    One read of a file serves every request of it: only the requested videos and the row
    groups whose times overlap the requests are read (pictures are stored sorted by time in
    small row groups). A missing file (an index built with ``--no_references``, a received
    hash list) answers nothing: those candidates cannot be judged and keep the hashes' word.
    """

    def __init__(self) -> None:
        self.reads = Metrics.counter("verify", "picture_files_read")
        self.pictures = Metrics.counter("verify", "pictures_read")

    def process(self, element: tuple[str, Iterable[PictureRequest]]
                ) -> Iterator[tuple[str, list[tuple[int, float, bytes]]]]:
        file, requests = element
        requests = list(requests)
        table = parquet.read_rows_between(file, "ts_start", min(r.start for r in requests),
                                          max(r.end for r in requests))
        if table is None:
            return
        self.reads.inc()
        rows = list(zip(*(table.column(c).to_pylist() for c in ("video_id", "ts_start", "jpeg")),
                        strict=True))
        for sha256, group in itertools.groupby(sorted(requests), key=lambda r: r.sha256):
            wanted = list(group)
            found = [(vid, ts, jpeg) for vid, ts, jpeg in rows
                     if any(r.video_id == vid and r.start <= ts <= r.end for r in wanted)]
            self.pictures.inc(len(found))
            yield sha256, found


class VerifyCandidates(beam.DoFn):
    """``(sha256, {candidates, pictures})`` → Candidates whose spans passed (or could not be
    given) the check, against the stored pictures read for them."""

    def __init__(self, k: int):
        self.k = k
        self.checked = Metrics.counter("verify", "spans_checked")
        self.accepted = Metrics.counter("verify", "spans_accepted")
        self.rejected = Metrics.counter("verify", "spans_rejected")
        self.rescued = Metrics.counter("verify", "queries_rescued")
        self.verify_ms = Metrics.distribution("verify", "verify_ms_per_query")

    def setup(self) -> None:
        self._features: OrderedDict[tuple[int, float], local_features.Features] = OrderedDict()

    def reference_features(self, key: tuple[int, float]) -> local_features.Features | None:
        """Features of a stored picture among this element's, cached across elements."""
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        jpeg = self.pictures.get(key)
        if jpeg is None:
            return None
        features = local_features.features(pictures.decode_reference(jpeg))
        self._features[key] = features
        if len(self._features) > FEATURE_CACHE:
            self._features.popitem(last=False)
        return features

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator[Candidates]:
        _, grouped = element
        (candidates,) = grouped["candidates"]
        self.pictures = {(vid, ts): jpeg for found in grouped["pictures"]
                         for vid, ts, jpeg in found}
        times: dict[int, list[float]] = {}
        for vid, ts in self.pictures:
            times.setdefault(vid, []).append(ts)
        self.times = {vid: np.sort(np.asarray(ts)) for vid, ts in times.items()}
        query = candidates.query
        if query.picture is None or not (candidates.spans or candidates.rescue):
            yield candidates
            return
        began = time.monotonic()
        query_features = local_features.features(query.picture, local_features.QUERY_FEATURES,
                                                 mirror=True)
        kept = [self._check(query_features, span) for span in candidates.spans[: self.k]]
        kept += candidates.spans[self.k:]
        rescued = []
        if not any(kept):  # nothing the hashes found survived: try the nearest rows
            seen = {(s.video_id, s.ts_best) for s in candidates.spans}
            rescued = [self._refine(query_features, self._check(query_features, span, True))
                       for span in candidates.rescue[: self.k]
                       if (span.video_id, span.ts_best) not in seen]
        spans = [s for s in kept + rescued if s is not None]
        if any(rescued):
            self.rescued.inc()
        spans.sort(key=rank_key)
        self.verify_ms.update(int((time.monotonic() - began) * 1000))
        yield Candidates(query, spans, [])

    def _refine(self, query: local_features.Features, span: Span | None) -> Span | None:
        """A rescued span's moment, re-chosen by local features among the stored frames
        around it: its hashes were far from every frame, so the nearest by hash is often
        another moment of the same pan or zoom. The span becomes the best frame's row."""
        if span is None:
            return None
        times = self.times.get(span.video_id, np.zeros(0))
        near = times[np.abs(times - span.ts_best) <= REFINE_S]
        near = near[np.argsort(np.abs(near - span.ts_best), kind="stable")][1:REFINE_N + 1]
        best, best_inliers = span.ts_best, span.inliers or 0
        for ts in near.tolist():
            reference = self.reference_features((span.video_id, ts))
            if reference is None or len(reference.keypoints) < local_features.MIN_INLIERS:
                continue
            self.checked.inc()
            verdict = local_features.verify(query, reference)
            if verdict.accepted and verdict.inliers > best_inliers:
                best, best_inliers = ts, verdict.inliers
        if best == span.ts_best:
            return span
        later = times[times > best]
        end = float(later[0]) - 1e-3 if len(later) else best  # the row ends before the next
        return dataclasses.replace(span, ts_best=best, ts_start=best, ts_end=max(best, end),
                                   inliers=best_inliers,
                                   score=verified_score(span.score, best_inliers))

    def _check(self, query: local_features.Features, span: Span, rescue: bool = False
               ) -> Span | None:
        reference = self.reference_features((span.video_id, span.ts_best))
        if reference is None or min(len(query.keypoints),
                                    len(reference.keypoints)) < local_features.MIN_INLIERS:
            return None if rescue else span  # cannot judge: the hashes' word stands
        self.checked.inc()
        verdict = local_features.verify(query, reference)
        if not verdict.accepted:
            self.rejected.inc()
            if not rescue and span.distance <= SURE_DISTANCE:
                return dataclasses.replace(span, verified=False, inliers=verdict.inliers)
            return None
        self.accepted.inc()
        return dataclasses.replace(span, verified=True, inliers=verdict.inliers,
                                   score=verified_score(span.score, verdict.inliers))



class VerifyWithStoredPictures(beam.PTransform):
    """Candidates → verified Candidates, reading only the stored pictures the checks need,
    grouped by file (one read serves every query that needs that file), then joined back."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def expand(self, candidates):
        k = self.k
        pictures = (
            candidates
            | "PictureRequests" >> beam.FlatMap(picture_requests, k)
            | "ByFile" >> beam.GroupByKey()
            | "ReadPictures" >> beam.ParDo(ReadPictures())
        )
        return (
            {"candidates": candidates | "KeyBySha" >> beam.Map(lambda c: (c.query.sha256, c)),
             "pictures": pictures}
            | "JoinPictures" >> beam.CoGroupByKey()
            | "Check" >> beam.ParDo(VerifyCandidates(k))
        )
