"""Matched rows collapsed into spans: the answer a person can use.

A query of a near-static shot matches many frames, and the honest answer is "somewhere in
00:41.2–00:44.0, best at 00:42.1", not one arbitrary frame. ``collapse_spans`` turns the
(variant, row, distance) pairs of one query into ranked spans per video; ``rank_key`` is
the one order of spans everywhere (best score first, then the narrower span).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from transforms.hashing.regions import REGIONS
from transforms.search.reference import ReferenceIndex

SPAN_GAP_S = 2.0  # matched rows further apart than this are separate spans (replays, recaps)


@dataclasses.dataclass(frozen=True)
class Span:
    """A run of matched rows of one video, with its best frame.

    ``verified`` is None when no local-feature check was made, else its outcome, with the
    RANSAC ``inliers`` it found.
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
    n_frames: int
    score: float
    hasher: str = "phash256"
    verified: bool | None = None
    inliers: int | None = None


def score_of(distance: int, n_bits: int) -> float:
    """1 for identical hashes, 0 at half the bits (where unrelated pictures sit)."""
    return max(0.0, 1.0 - distance / (n_bits / 2))


def collapse_spans(ref: ReferenceIndex, variant: np.ndarray, rows: np.ndarray,
                   dist: np.ndarray, variant_names: Sequence[str], n_bits: int,
                   top_k: int, gap_s: float = SPAN_GAP_S, hasher: str | None = None
                   ) -> list[Span]:
    """Group one query's matched rows into spans per video, best first, at most ``top_k``."""
    spans: list[Span] = []
    vids = ref.video_id[rows]
    for vid in np.unique(vids):
        sel = np.flatnonzero(vids == vid)
        order = sel[np.argsort(ref.ts_start[rows[sel]], kind="stable")]
        starts, ends = ref.ts_start[rows[order]], ref.ts_end[rows[order]]
        reach = np.maximum.accumulate(ends)
        breaks = np.flatnonzero(starts[1:] - reach[:-1] > gap_s) + 1
        for group in np.split(order, breaks):
            best = group[np.lexsort((ref.ts_end[rows[group]] - ref.ts_start[rows[group]],
                                     dist[group]))[0]]
            row = rows[best]
            names = tuple(sorted({variant_names[v] for v in variant[group]}))
            spans.append(Span(
                video_id=int(vid), video=ref.videos[int(vid)], ts_best=float(ref.ts_start[row]),
                ts_start=float(ref.ts_start[rows[group]].min()),
                ts_end=float(ref.ts_end[rows[group]].max()),
                distance=int(dist[best]), variant=variant_names[variant[best]],
                region=REGIONS[int(ref.region[row])][0], variants=names,
                n_frames=len(np.unique(rows[group])),
                score=score_of(int(dist[best]), n_bits), hasher=hasher or ref.hasher,
            ))
    spans.sort(key=rank_key)
    return spans[:top_k]


def rank_key(span: Span) -> tuple[float, float]:
    """The order of a query's spans: best score first, then the narrower (surer) span."""
    return (-span.score, span.ts_end - span.ts_start)
