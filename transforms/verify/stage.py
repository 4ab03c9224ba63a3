"""The verification stage: re-check a query's candidates with local features, rank them all.

Hashes cannot see through rotations, heavy or off-centre crops, or pads they were not
trimmed of, and they cannot tell apart the moments of a slow pan or a near-static shot,
which hash alike. Local features can: an ORB + RANSAC similarity check
(``transforms.verify.local_features``) of the query against a stored reference picture
says whether the query shows that frame, and its inlier count peaks at the right frame
when anything in the picture moves.

So every candidate span is checked on several of its stored frames, not only on the one
the hashes liked best (``SpanCheck``): the hash-best frames first, then frames spread over
the span, then, around the strongest so far, frames at half the distance each time (the
inliers rise towards the true moment, even where the check still rejects). The frame with
the most inliers in agreement with the post's geometry becomes the span's moment. Queries
the hashes could not place (or whose spans were all rejected) are rescued the same way
from their nearest rows.

One score ranks everything (``evidence_score``): the hash
agreement and the local-feature agreement combined so that more of either never lowers it.
A span is dropped when its check rejects it, unless its hash distance is within
``SURE_DISTANCE`` bits (kept, ``verified = False``: local features miss on smooth or
fast-changing pictures that the hashes place well); a span the check cannot judge (no
stored picture, too few features on either side, or too few matching features to fit any
geometry, as on a smooth still) keeps the hashes' word.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from transforms.hashing.hashes import HASHERS
from transforms.hashing.regions import REGION_BOX_BY_NAME
from transforms.io import parquet
from transforms.media import pictures
from transforms.search.query import Candidates
from transforms.search.spans import Span, rank_key, score_of
from transforms.verify import local_features

FEATURE_CACHE = 4096  # reference pictures' features kept per worker process
REFINE_S = 3.0  # a rescued span's frames are looked for this far around its rows
WINDOW_S = 10.0  # a span's frames are checked at most this far from its hash-best frame
NEAR_S = 0.6  # pictures are read this close to the hash-best and the spread frames
PER_TARGET = 6  # at most this many per such frame (the nearest)
WINDOW_PICTURES = 48  # pictures read for a query's likeliest span, evenly over its window
RESCUE_WINDOW_S = WINDOW_S  # how far around the first rescue candidate's rows to look
PHOTOMETRIC_GAIN = 0.9  # a frame that looks this much closer than the chosen one replaces it
HASH_BEST_CHECKS = 2  # a span's frames checked first: the nearest by hash
SPREAD_CHECKS = 3  # then frames spread evenly over the span
MAX_CHECKS_PER_SPAN = 10  # then frames around the strongest, closer each time
MAX_CHECKS_PER_QUERY = 24
ALIKE = 0.8  # frames whose check is this strong relative to the best are indistinguishable
AGREEMENT_TOLERANCE = 0.005  # box agreements this close are equal (a fixed shot's all are)
SURE_DISTANCE = 24  # of 256 key bits: a hash match this close stands even if the check fails
INLIER_SCALE = 50.0  # inliers past the acceptance floor that take a check's agreement to 63%


def evidence_score(distance: int, inliers: float | None, n_bits: int) -> float:
    """A span's score from all its evidence: ``1 - (1 - hash) * (1 - check)``.

    ``hash`` is the hashes' agreement (``score_of``: 1 at distance 0, 0 at half the bits);
    ``check`` is the local features' agreement of an accepted check, rising from 0 at the
    acceptance floor (``MIN_INLIERS``) towards 1: ``1 - exp(-(inliers - floor) / 50)``.
    Either kind of evidence alone can make a span sure, both together make it surer, and
    more of either never lowers it. Reading it: 0.9 is a hash match within 13 of 256 bits,
    or an accepted check with ~90 inliers beside a hash match at the search radius (48
    bits), or ~105 inliers on a rescued candidate that the hashes put at 64 bits.
    """
    hashed = score_of(distance, n_bits)
    checked = 0.0 if inliers is None else 1.0 - math.exp(
        -max(0, inliers - local_features.MIN_INLIERS) / INLIER_SCALE)
    return 1.0 - (1.0 - hashed) * (1.0 - checked)


class PictureRequest(NamedTuple):
    """Stored pictures of one video that one query's check reads, between ``start`` and
    ``end``: those within ``NEAR_S`` of each of ``targets`` (at most ``PER_TARGET`` each),
    or, with no targets, all of them (at most ``WINDOW_PICTURES``, evenly spaced)."""

    sha256: str
    video_id: int
    start: float
    end: float
    targets: tuple[float, ...]


def picture_requests(candidates: Candidates, k: int
                     ) -> Iterator[tuple[str, PictureRequest]]:
    """``(references file, request)`` for every picture the checks of these candidates may
    read. The first span and the first rescue candidate (the likeliest answers) read every
    stored frame of their window, at most ``WINDOW_PICTURES``: their moment is chosen among
    all of them. The other spans (checked when the first are rejected) and the first ``k``
    rescue candidates read around their hash-best frames and at points spread over them."""
    sha256 = candidates.query.sha256
    for i, span in enumerate(candidates.spans):
        yield from _requests(sha256, span, 0.0, whole=i == 0)
    for i, span in enumerate(candidates.rescue[:k]):
        yield from _requests(sha256, span, RESCUE_WINDOW_S if i == 0 else REFINE_S,
                             whole=i == 0)


def _requests(sha256: str, span: Span, margin: float, whole: bool
              ) -> Iterator[tuple[str, PictureRequest]]:
    start, end = check_window(span, margin, whole)
    targets = () if whole else tuple(sorted(
        {*(ts for ts, _ in span.frames[:HASH_BEST_CHECKS]),
         *np.linspace(start, end, SPREAD_CHECKS + 2)[1:-1].tolist()}))
    for file in sorted({file for _, file in span.frames}):
        yield file, PictureRequest(sha256, span.video_id, start, end, targets)


def check_window(span: Span, margin: float, whole: bool = False) -> tuple[float, float]:
    """The times whose stored frames may be checked for a span: the span (widened by
    ``margin``); unless ``whole``, at most ``WINDOW_S`` either side of its hash-best frame,
    so a span of a long static shot costs a bounded read. The likeliest span is read
    ``whole`` (``WINDOW_PICTURES`` bound the read): in a long fixed shot every moment is
    as near by hash, and the right one may be anywhere in it."""
    if whole:
        return span.ts_start - margin, span.ts_end + margin
    return (max(span.ts_start - margin, span.ts_best - WINDOW_S),
            min(span.ts_end + margin, span.ts_best + WINDOW_S))


def wanted(request: PictureRequest, video_id: int, ts: float) -> bool:
    return (video_id == request.video_id and request.start <= ts <= request.end
            and (not request.targets or any(abs(ts - t) <= NEAR_S for t in request.targets)))


def _evenly(rows: list, n: int) -> list:
    """At most ``n`` of ``rows`` (in time order), evenly spaced."""
    if len(rows) <= n:
        return rows
    return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int).tolist()]


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
            found: dict[tuple[int, float], bytes] = {}
            for request in group:
                near = [(vid, ts, jpeg) for vid, ts, jpeg in rows if wanted(request, vid, ts)]
                if not request.targets:
                    near.sort(key=lambda row: row[1])
                    found.update(((vid, ts), jpeg) for vid, ts, jpeg
                                 in _evenly(near, WINDOW_PICTURES))
                for target in request.targets:
                    near.sort(key=lambda row, t=target: (abs(row[1] - t), row[1]))
                    found.update(((vid, ts), jpeg) for vid, ts, jpeg in near[:PER_TARGET])
            self.pictures.inc(len(found))
            yield sha256, [(vid, ts, jpeg) for (vid, ts), jpeg in sorted(found.items())]


class Outcome(NamedTuple):
    """What checking one span found: the span as it stands after the check, or None if
    the check rejected it (or, for a rescue candidate, could not judge it)."""

    span: Span | None
    accepted: bool
    judged: bool  # the check had enough features on both sides to say yes or no


class Check(NamedTuple):
    """One stored frame checked: the verdict and how well its geometry agrees with the
    boxes the query analysis found (``local_features.box_agreement``); ``_best`` chooses
    among a span's checks."""

    verdict: local_features.Verdict
    agreement: float

    @property
    def strength(self) -> float:
        """Inliers in agreement: what scores the span."""
        return self.verdict.inliers * self.agreement


class SpanCheck:
    """Checks the stored frames of one query's spans, within a budget of checks.

    Holds the query's features and boxes (where the analysis of the post says the frame
    may be: the whole post, the picture inside pads or a screenshot, the rows under a
    caption), the stored pictures read for the query, and the worker's cache of reference
    features (shared across queries: the same frames come back).
    """

    def __init__(self, query: local_features.Features, boxes: Iterable[tuple[float, ...]],
                 stored: dict[tuple[int, float], bytes], cache: OrderedDict, counters: dict,
                 unverified_distance: int, budget: int = MAX_CHECKS_PER_QUERY,
                 grey: np.ndarray | None = None):
        self.query = query
        self.grey = grey
        self.unverified_distance = unverified_distance
        self.boxes = sorted({(0.0, 0.0, 1.0, 1.0), *(tuple(b) for b in boxes)})
        self.stored = stored
        self.cache = cache
        self.counters = counters
        self.budget = budget
        times: dict[int, list[float]] = {}
        for vid, ts in stored:
            times.setdefault(vid, []).append(ts)
        self.times = {vid: np.sort(np.asarray(ts)) for vid, ts in times.items()}

    def reference(self, key: tuple[int, float]) -> local_features.Features | None:
        """Features of a stored picture, cached across the worker's queries."""
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        jpeg = self.stored.get(key)
        if jpeg is None:
            return None
        found = local_features.features(pictures.decode_reference(jpeg))
        self.cache[key] = found
        if len(self.cache) > FEATURE_CACHE:
            self.cache.popitem(last=False)
        return found

    def _verdict(self, span: Span, ts: float) -> Check | None:
        """The check of one stored frame, or None when it cannot judge (no picture, too few
        features on either side) or the budget is spent."""
        reference = self.reference((span.video_id, ts))
        if reference is None or self.budget <= 0 or min(
                len(self.query.keypoints), len(reference.keypoints)) < local_features.MIN_INLIERS:
            return None
        self.budget -= 1
        self.counters["checked"].inc()
        verdict = local_features.verify(self.query, reference,
                                        mirrored_first=span.variant.endswith("+flip"))
        if not verdict.accepted:
            return Check(verdict, 0.0)
        regions = {(0.0, 0.0, 1.0, 1.0), REGION_BOX_BY_NAME.get(span.region, (0.0, 0.0, 1.0, 1.0))}
        query = self.query.mirror if verdict.flipped else self.query
        return Check(verdict, max(local_features.box_agreement(verdict, reference, query, r, b)
                                  for r in regions for b in self.boxes))

    def check(self, span: Span, margin: float = 0.0) -> Outcome:
        """The span's best-agreeing stored frame becomes its moment (``ts_best``)."""
        start, end = check_window(span, margin, whole=True)  # the pictures read bound it
        times = self.times.get(span.video_id, np.zeros(0))
        times = times[(times >= start) & (times <= end)]
        if not len(times):
            return Outcome(span, False, False)
        verdicts: dict[float, Check | None] = {}

        def look(ts: float) -> None:
            if ts not in verdicts and len(verdicts) < MAX_CHECKS_PER_SPAN:
                verdicts[ts] = self._verdict(span, ts)

        def nearest(ts: float) -> float:
            return float(times[np.abs(times - ts).argmin()])

        for ts, _ in span.frames[:HASH_BEST_CHECKS]:
            look(ts)
        first, last = float(times[0]), float(times[-1])
        for ts in np.linspace(first, last, SPREAD_CHECKS + 2)[1:-1].tolist():
            look(nearest(ts))
        # climb towards the strongest frame, halving the step: inliers rise towards the
        # true moment even where the check still rejects
        step = (last - first) / (SPREAD_CHECKS + 1) / 2
        while len(verdicts) < MAX_CHECKS_PER_SPAN and step > 0:
            at = _strongest(verdicts)
            if at is None:
                break
            for ts in (nearest(at - step), nearest(at + step)):
                look(ts)
            if step < np.diff(times).min(initial=np.inf):
                break
            step /= 2
        judged = {ts: c for ts, c in verdicts.items() if c is not None and c.verdict.conclusive}
        if not judged:  # the hashes' word, if they are sure enough alone
            return Outcome(span if span.distance <= self.unverified_distance else None,
                           False, False)
        best = _best(verdicts)
        if best is None:  # every frame checked rejected it
            self.counters["rejected"].inc()
            strongest = max(c.verdict.inliers for c in judged.values())
            if margin == 0.0 and span.distance <= SURE_DISTANCE:
                return Outcome(dataclasses.replace(span, verified=False,
                                                   inliers=strongest), False, True)
            return Outcome(None, False, True)
        best = self._closest_look(span, times, best, verdicts)
        self.counters["accepted"].inc()
        judged = {ts: c for ts, c in verdicts.items() if c is not None and c.verdict.conclusive}
        inliers = judged[best].verdict.inliers
        strength = judged[best].strength
        start, end = min(span.ts_start, best), max(span.ts_end, best)
        if margin:  # a rescued candidate: the frames that verify about as well as the best
            alike = [ts for ts, c in judged.items()
                     if c.verdict.accepted and c.strength >= ALIKE * strength]
            later = times[times > max(alike)]
            start = min(alike)
            end = max(max(alike), float(later[0]) - 1e-3) if len(later) else max(alike)
        return Outcome(dataclasses.replace(
            span, ts_best=best, ts_start=start, ts_end=end, verified=True, inliers=inliers,
            score=evidence_score(span.distance, strength, HASHERS[span.hasher].bits)),
            True, True)


    def _closest_look(self, span: Span, times: np.ndarray, best: float,
                      verdicts: dict[float, Check | None]) -> float:
        """The chosen frame, or the stored frame of the window that looks clearly closer
        to the query when laid onto it with the chosen frame's geometry (and passes a check
        of its own): in a fixed shot every frame fits one geometry and local features
        barely tell moments apart, but pixels do where anything moved."""
        if self.grey is None:
            return best
        verdict = verdicts[best].verdict
        side = max(self.reference((span.video_id, best)).size)
        looks = {}
        for ts in times.tolist():
            jpeg = self.stored.get((span.video_id, ts))
            if jpeg is not None:
                looks[ts] = local_features.photometric_distance(
                    self.grey, pictures.decode_reference_small(jpeg), side, verdict)
        closest = min(looks, key=lambda ts: (looks[ts], ts)) if looks else best
        if closest == best or looks[closest] > PHOTOMETRIC_GAIN * looks.get(best, math.inf):
            return best
        if closest not in verdicts:
            verdicts[closest] = self._verdict(span, closest)
        found = verdicts[closest]
        return closest if found is not None and found.verdict.accepted else best


def _strongest(checks: dict[float, Check | None]) -> float | None:
    """Where to climb from: the best accepted frame, else the rejected one with the most
    inliers (the earliest of equals), else None."""
    best = _best(checks)
    if best is not None:
        return best
    judged = [(c.verdict.inliers, -ts) for ts, c in checks.items() if c is not None]
    return -max(judged)[1] if judged else None


def _best(checks: dict[float, Check | None]) -> float | None:
    """Among the accepted frames with about the most inliers (``ALIKE``), those whose
    geometry agrees best with the post (within ``AGREEMENT_TOLERANCE``), and of those the
    one with the most inliers (then the earliest). None if none is accepted.

    Inliers peak at the true moment where things move, but they saturate where the same
    scenery fills neighbouring frames (a slow pan over a star field: 250-276 inliers over
    eight seconds); there, where the frame lands in the post tells the moment."""
    accepted = {ts: c for ts, c in checks.items() if c is not None and c.verdict.accepted}
    if not accepted:
        return None
    most = max(c.verdict.inliers for c in accepted.values())
    alike = {ts: c for ts, c in accepted.items() if c.verdict.inliers >= ALIKE * most}
    agreeing = max(c.agreement for c in alike.values()) - AGREEMENT_TOLERANCE
    return -max((c.verdict.inliers, -ts) for ts, c in alike.items()
                if c.agreement >= agreeing)[1]


class VerifyCandidates(beam.DoFn):
    """``(sha256, {candidates, pictures})`` → Candidates whose spans passed (or could not be
    given) the check, re-ranked by all the evidence, against the stored pictures read for
    them."""

    def __init__(self, k: int, unverified_distance: int):
        self.k = k
        self.unverified_distance = unverified_distance
        self.counters = {name: Metrics.counter("verify", f"spans_{name}")
                         for name in ("checked", "accepted", "rejected")}
        self.rescued = Metrics.counter("verify", "queries_rescued")
        self.verify_ms = Metrics.distribution("verify", "verify_ms_per_query")

    def setup(self) -> None:
        self._features: OrderedDict[tuple[int, float], local_features.Features] = OrderedDict()

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator[Candidates]:
        _, grouped = element
        (candidates,) = grouped["candidates"]
        query = candidates.query
        if query.picture is None or not (candidates.spans or candidates.rescue):
            yield candidates
            return
        began = time.monotonic()
        stored = {(vid, ts): jpeg for found in grouped["pictures"] for vid, ts, jpeg in found}
        check = SpanCheck(local_features.features(query.picture, local_features.QUERY_FEATURES,
                                                  mirror=True),
                          (query.variant_boxes or {}).values(), stored, self._features,
                          self.counters, self.unverified_distance, grey=query.picture)
        kept: list[Span] = []
        accepted = sure = False
        for i, span in enumerate(candidates.spans):
            if i >= self.k and accepted:  # the rest keep the hashes' word, ranked below
                kept.append(span)
                continue
            outcome = check.check(span)
            accepted |= outcome.accepted
            if outcome.span is not None:
                kept.append(outcome.span)
                sure |= outcome.span.distance <= SURE_DISTANCE
        if not accepted and not sure:  # nothing placed for sure: try the nearest rows
            seen = {(s.video_id, s.ts_best) for s in candidates.spans}
            rescued = [check.check(span, REFINE_S) for span in candidates.rescue[: self.k]
                       if (span.video_id, span.ts_best) not in seen]
            found = [o.span for o in rescued if o.accepted]
            if found:
                self.rescued.inc()
                kept += found
        kept.sort(key=rank_key)
        self.verify_ms.update(int((time.monotonic() - began) * 1000))
        yield Candidates(query, kept, [])


class VerifyWithStoredPictures(beam.PTransform):
    """Candidates → verified Candidates, reading only the stored pictures the checks need,
    grouped by file (one read serves every query that needs that file), then joined back.

    ``unverified_distance``: a span that no check could judge keeps the hashes' word only
    this close (the match threshold: the margin beyond it, the index's ``prune_d``, is there
    for the frames pruned into a row, and needs a check's agreement).
    """

    def __init__(self, k: int, unverified_distance: int):
        super().__init__()
        self.k = k
        self.unverified_distance = unverified_distance

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
            | "Check" >> beam.ParDo(VerifyCandidates(k, self.unverified_distance))
        )
