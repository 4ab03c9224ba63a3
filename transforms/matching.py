"""From query hashes to answers: the reference index held in memory, and spans.

``ReferenceIndex`` is what each worker process holds (once, through ``Shared``): the live
frame rows of an index as numpy arrays plus a multi-index hash over the rows that may be
search keys. ``collapse_spans`` turns the (variant, row, distance) pairs of one query into
ranked spans per video: a query of a near-static shot matches many frames, and the honest
answer is "somewhere in 00:41.2–00:44.0, best at 00:42.1", not one arbitrary frame.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.manifest import Manifest
from transforms import index_store
from transforms.hashing import codes_of
from transforms.mih import HammingIndex
from transforms.pdq_lists import PdqRows
from transforms.preprocess import REGIONS

MIN_QUALITY = 50  # PDQ quality below which a frame or a query variant is no search key
SPAN_GAP_S = 2.0  # matched rows further apart than this are separate spans (replays, recaps)


@dataclasses.dataclass
class ReferenceIndex:
    """Live frame rows of an index, searchable by exact Hamming range queries."""

    hasher: str
    prune_d: int
    video_id: np.ndarray  # (N,) int64
    ts_start: np.ndarray  # (N,) float64
    ts_end: np.ndarray  # (N,) float64
    region: np.ndarray  # (N,) int8, codes of transforms.preprocess.REGIONS
    key_rows: np.ndarray  # (K,) positions of the rows the MIH indexes
    key_codes: np.ndarray  # (K, bytes) their codes
    mih: HammingIndex
    pdq: PdqRows | None  # rows that have only a PDQ (imported hash lists), or None
    videos: dict[int, dict]  # video_id -> videos row (uri, title, ...)

    @classmethod
    def from_tables(cls, videos: pa.Table, frames: pa.Table, hasher: str,
                    prune_d: int) -> ReferenceIndex:
        keyed = pc.is_valid(frames.column("key")).to_numpy(zero_copy_only=False)
        codes = codes_of(frames.column("key").fill_null(bytes(32)))
        quality = frames.column("quality").fill_null(100).to_numpy()
        flat = frames.column("flat").to_numpy(zero_copy_only=False)
        key_rows = np.flatnonzero(keyed & (quality >= MIN_QUALITY) & ~flat)
        pdq = PdqRows(frames, keyless_only=True) if not keyed.all() else None
        return cls(
            hasher=hasher, prune_d=prune_d,
            video_id=frames.column("video_id").to_numpy(),
            ts_start=frames.column("ts_start").to_numpy(),
            ts_end=frames.column("ts_end").to_numpy(),
            region=frames.column("region").to_numpy(),
            key_rows=key_rows,
            key_codes=codes[key_rows],
            pdq=pdq if pdq is not None and len(pdq.rows) else None,
            mih=HammingIndex(codes[key_rows]),
            videos={row["video_id"]: row for row in videos.to_pylist()},
        )

    @classmethod
    def load(cls, index_dir: str, manifest: Manifest) -> ReferenceIndex:
        videos = index_store.live_videos(index_dir, manifest)
        frames = index_store.live_frames(index_dir, manifest, videos)
        return cls.from_tables(videos, frames, manifest.key_hasher, manifest.prune_d)

    def search(self, codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(variant index, frame row, distance) for every key row within ``radius``."""
        variant, key, dist = self.mih.search(codes, radius)
        return variant, self.key_rows[key], dist

    def nearest(self, codes: np.ndarray, k: int, max_distance: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``k`` key rows nearest to any variant (within ``max_distance``), brute force.

        The coarse candidate set of the verification stage, for queries whose hashes matched
        nothing within the radius (rotations, heavy crops): a scan of every key row, so it
        costs O(rows x variants) per query and runs only for those queries.
        """
        if len(codes) == 0 or len(self.key_rows) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        words = self.key_words
        query_words = np.ascontiguousarray(codes).view(np.uint64)
        best = np.full(len(words), np.iinfo(np.int64).max, dtype=np.int64)
        best_variant = np.zeros(len(words), dtype=np.int64)
        for v, q in enumerate(query_words):
            dist = np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int64)
            better = dist < best
            best[better], best_variant[better] = dist[better], v
        order = np.argsort(best, kind="stable")[:k]
        order = order[best[order] <= max_distance]
        return best_variant[order], self.key_rows[order], best[order]

    @functools.cached_property
    def key_words(self) -> np.ndarray:
        """The key rows' codes as (K, 4) uint64 words, for brute-force scans."""
        return np.ascontiguousarray(self.key_codes).view(np.uint64)


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
    spans.sort(key=lambda s: (-s.score, s.ts_end - s.ts_start))
    return spans[:top_k]
