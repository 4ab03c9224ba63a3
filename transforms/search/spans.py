"""Matched rows collapsed into spans: the answer a person can use.

A query of a near-static shot matches many frames, and the honest answer is "somewhere in
00:41.2–00:44.0, best at 00:42.1", not one arbitrary frame. The search of each shard
returns ``Hits`` (the matched rows, column by column); the hits of every shard are
concatenated per query and ``collapse_spans`` turns them into ranked spans per video.
``rank_key`` is the one order of spans everywhere (best score first, then the narrower
span, then video and time, so that no tie is left to the order rows were stored in).

The work per query is bounded by its hits, whatever the archive: one sort of the hits,
vectorised span boundaries, and ``Span`` objects built for the ``top_k`` best spans only
(a bumper shared by 10k videos costs one sort, not 10k passes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from transforms.hashing.regions import REGIONS

SPAN_GAP_S = 2.0  # matched rows further apart than this are separate spans (replays, recaps)


class Hits(NamedTuple):
    """Index rows matched by one query's variants (from one shard, or every shard merged).

    Row ``i`` is a key row of video ``video_id[i]`` standing for ``[ts_start, ts_end]``,
    hashed over region ``region[i]``, at ``distance[i]`` bits from query variant
    ``variant[i]``; its stored picture is in ``files[file[i]]`` (a ``references`` file).
    """

    hasher: str
    variant: np.ndarray  # (H,) int16
    video_id: np.ndarray  # (H,) int64
    ts_start: np.ndarray  # (H,) float64
    ts_end: np.ndarray  # (H,) float64
    region: np.ndarray  # (H,) int8
    distance: np.ndarray  # (H,) int32
    file: np.ndarray  # (H,) int32, positions in ``files``
    files: list[str]
    videos: dict[int, dict]  # video_id -> videos row (uri, title, ...) of the hit videos

    @classmethod
    def empty(cls, hasher: str) -> Hits:
        return cls(hasher, np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros(0),
                   np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.int32),
                   np.zeros(0, np.int32), [], {})

    @property
    def size(self) -> int:
        """The number of hits (``len`` of a NamedTuple is its number of fields)."""
        return len(self.variant)

    def take(self, rows: np.ndarray) -> Hits:
        """The hits at positions ``rows`` (files and videos kept whole)."""
        return self._replace(**{name: getattr(self, name)[rows] for name in _COLUMNS})

    @classmethod
    def concat(cls, parts: Sequence[Hits], hasher: str) -> Hits:
        """Hits of several shards as one (file positions renumbered)."""
        parts = [p for p in parts if p.size]
        if not parts:
            return cls.empty(hasher)
        offsets = np.cumsum([0] + [len(p.files) for p in parts[:-1]])
        columns = {name: np.concatenate([getattr(p, name) for p in parts])
                   for name in _COLUMNS if name != "file"}
        columns["file"] = np.concatenate([p.file + o for p, o in zip(parts, offsets,
                                                                     strict=True)])
        videos = {vid: row for p in parts for vid, row in p.videos.items()}
        return cls(hasher=hasher, files=[f for p in parts for f in p.files], videos=videos,
                   **columns)


_COLUMNS = ("variant", "video_id", "ts_start", "ts_end", "region", "distance", "file")


@dataclasses.dataclass(frozen=True)
class Span:
    """A run of matched rows of one video, with its best frame.

    ``verified`` is None when no local-feature check was made, else its outcome, with the
    RANSAC ``inliers`` it found. ``frames`` are the span's stored frames, best first, as
    ``(pts, references file)``: where verification finds their pictures.
    """

    video_id: int
    video: dict  # the video's row: uri, title, source_url, published, ...
    ts_best: float
    ts_start: float
    ts_end: float
    distance: int
    variant: str
    region: str
    variants: tuple[str, ...]
    n_frames: int  # distinct archive frames matched (not rows: a frame has several regions)
    score: float
    hasher: str = "phash256"
    verified: bool | None = None
    inliers: int | None = None
    frames: tuple[tuple[float, str], ...] = ()


def score_of(distance: int, n_bits: int) -> float:
    """1 for identical hashes, 0 at half the bits (where unrelated pictures sit)."""
    return max(0.0, 1.0 - distance / (n_bits / 2))


def rank_key(span: Span) -> tuple[float, float, int, float]:
    """The order of a query's spans: best score first, then the narrower (surer) span, then
    video and time, so equal spans never fall to the order rows happened to be stored in."""
    return (-span.score, span.ts_end - span.ts_start, span.video_id, span.ts_best)


def collapse_spans(hits: Hits, variant_names: Sequence[str], n_bits: int, top_k: int,
                   gap_s: float = SPAN_GAP_S, exclude: frozenset[str] = frozenset()
                   ) -> list[Span]:
    """Group one query's hits into spans per video; the ``top_k`` best, in ``rank_key`` order.

    ``exclude`` holds video URIs whose spans are left out before ranking (pairs an analyst
    rejected), so they never take a place of the top ``top_k``.
    """
    if exclude and hits.size:
        excluded = [vid for vid, row in hits.videos.items() if row["uri"] in exclude]
        hits = hits.take(np.flatnonzero(~np.isin(hits.video_id, excluded)))
    if not hits.size:
        return []
    order = np.lexsort((hits.region, hits.ts_start, hits.video_id))
    vid, start, end = hits.video_id[order], hits.ts_start[order], hits.ts_end[order]
    new_video = np.r_[True, vid[1:] != vid[:-1]]
    group = np.cumsum(new_video)
    # the latest end reached so far within each video: one running maximum over all rows,
    # each video's times lifted above the previous video's (in integer microseconds, so
    # lifting and lowering are exact)
    start_us, end_us, gap_us = _micros(start), _micros(end), round(gap_s * 1e6)
    lift = (group - 1) * (int(end_us.max() - start_us.min()) + 2 * gap_us + 1)
    reach = np.maximum.accumulate(end_us + lift) - lift
    first = new_video | np.r_[True, start_us[1:] - reach[:-1] > gap_us]
    span_of = np.cumsum(first) - 1
    bounds = np.flatnonzero(first)
    dist = hits.distance[order]
    # best row per span: least distance; among rows at that distance (a static hold's rows
    # all are), the middle one in time (then the lower region), which is nearest on average
    # to a moment that could be any of them
    best_order = np.lexsort((hits.region[order], start, dist, span_of))
    best = best_order[_middle_of_ties(span_of[best_order], dist[best_order],
                                      start[best_order])]
    span_start = np.minimum.reduceat(start, bounds)
    span_end = np.maximum.reduceat(end, bounds)
    score = np.maximum(0.0, 1.0 - dist[best] / (n_bits / 2))
    ranked = np.lexsort((start[best], vid[best], span_end - span_start, -score))[:top_k]
    spans = []
    for s in ranked.tolist():
        rows = order[bounds[s]:bounds[s + 1] if s + 1 < len(bounds) else len(order)]
        b = order[best[s]]
        frames = _frames_best_first(hits, rows)
        spans.append(Span(
            video_id=int(hits.video_id[b]), video=hits.videos[int(hits.video_id[b])],
            ts_best=float(hits.ts_start[b]), ts_start=float(span_start[s]),
            ts_end=float(span_end[s]), distance=int(hits.distance[b]),
            variant=variant_names[int(hits.variant[b])],
            region=REGIONS[int(hits.region[b])][0],
            variants=tuple(sorted({variant_names[v] for v in hits.variant[rows].tolist()})),
            n_frames=len(frames), score=float(score[s]), hasher=hits.hasher, frames=frames))
    return spans


def _middle_of_ties(span: np.ndarray, dist: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per span, the position of its best row, over rows sorted by (span, distance, time):
    the first row at the middle distinct time among the rows at the span's least distance
    (several regions of one frame share a time). One pass, whatever the number of spans."""
    first = np.r_[True, span[1:] != span[:-1]]
    least = np.maximum.accumulate(np.where(first, np.arange(len(span)), 0))  # span's 1st row
    tied = dist == dist[least]
    new_time = tied & (first | np.r_[True, start[1:] != start[:-1]])
    rank = np.cumsum(new_time)
    rank -= rank[least] - new_time[least]  # 1-based rank of each new time within its span
    count = np.zeros(span[-1] + 1 if len(span) else 0, dtype=np.int64)
    np.add.at(count, span, new_time)
    target = (count[span] - 1) // 2 + 1
    return np.flatnonzero(new_time & (rank == target))


def _micros(seconds: np.ndarray) -> np.ndarray:
    return np.round(seconds * 1e6).astype(np.int64)


def _frames_best_first(hits: Hits, rows: np.ndarray) -> tuple[tuple[float, str], ...]:
    """The distinct frames of a span's rows, nearest first (then earlier), with their files."""
    by_quality = rows[np.lexsort((hits.ts_start[rows], hits.distance[rows]))]
    seen: dict[float, str] = {}
    for r in by_quality.tolist():
        seen.setdefault(float(hits.ts_start[r]), hits.files[int(hits.file[r])])
    return tuple(seen.items())
