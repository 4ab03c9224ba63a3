"""Spans from hits: the vectorised collapse against a plain per-video reference."""

from __future__ import annotations

import numpy as np

from transforms.search.spans import SPAN_GAP_S, Hits, collapse_spans, rank_key

NAMES = ["full", "full+flip", "trim"]


def random_hits(rng: np.random.Generator, n: int, videos: int) -> Hits:
    start = np.round(rng.uniform(0, 60, n), 2)
    return Hits(
        hasher="phash256", variant=rng.integers(0, len(NAMES), n).astype(np.int16),
        video_id=rng.integers(1, videos + 1, n).astype(np.int64), ts_start=start,
        ts_end=start + np.round(rng.uniform(0, 1.5, n), 2),
        region=rng.integers(0, 8, n).astype(np.int8),
        distance=rng.integers(0, 48, n).astype(np.int32),
        file=np.zeros(n, np.int32), files=["f.parquet"],
        videos={v: {"uri": f"v{v}.mp4"} for v in range(1, videos + 1)})


def reference_spans(hits: Hits) -> list[tuple]:
    """Per video, rows sorted by time, split where a row starts over SPAN_GAP_S after every
    earlier row ended; the best row: least distance, then the middle of the distinct times
    at that distance (the earlier of two middles), then the lower region."""
    spans = []
    for vid in np.unique(hits.video_id):
        rows = sorted(np.flatnonzero(hits.video_id == vid).tolist(),
                      key=lambda r: (hits.ts_start[r], hits.region[r]))
        groups, reach = [], -np.inf
        for r in rows:
            if not groups or round(hits.ts_start[r] * 1e6) - round(reach * 1e6) > SPAN_GAP_S * 1e6:
                groups.append([])
            groups[-1].append(r)
            reach = max(reach, hits.ts_end[r])
        for group in groups:
            least = min(hits.distance[g] for g in group)
            times = sorted({float(hits.ts_start[g]) for g in group if hits.distance[g] == least})
            middle = times[(len(times) - 1) // 2]
            best = min((g for g in group if hits.distance[g] == least
                        and float(hits.ts_start[g]) == middle), key=lambda r: hits.region[r])
            spans.append((int(vid), float(hits.ts_start[best]),
                          float(min(hits.ts_start[g] for g in group)),
                          float(max(hits.ts_end[g] for g in group)), int(hits.distance[best]),
                          len({float(hits.ts_start[g]) for g in group})))
    return spans


def test_collapse_matches_the_reference_and_ranks_deterministically() -> None:
    rng = np.random.default_rng(7)
    for trial in range(20):
        hits = random_hits(rng, int(rng.integers(1, 300)), int(rng.integers(1, 6)))
        got = collapse_spans(hits, NAMES, 256, top_k=1000)
        assert sorted((s.video_id, s.ts_best, s.ts_start, s.ts_end, s.distance, s.n_frames)
                      for s in got) == sorted(reference_spans(hits)), trial
        assert got == sorted(got, key=rank_key)
        shuffled = hits.take(rng.permutation(hits.size))  # storage order must not matter
        assert collapse_spans(shuffled, NAMES, 256, top_k=1000) == got


def test_hot_content_costs_one_pass_and_keeps_every_match() -> None:
    """A bumper shared by 20,000 videos: every video keeps its span, top_k bounds the output."""
    n = 20_000
    hits = Hits("phash256", np.zeros(n, np.int16), np.arange(n, dtype=np.int64),
                np.full(n, 3.0), np.full(n, 4.0), np.zeros(n, np.int8),
                np.full(n, 5, np.int32), np.zeros(n, np.int32), ["f"],
                {v: {"uri": f"v{v}"} for v in range(n)})
    top = collapse_spans(hits, NAMES, 256, top_k=5)
    assert [s.video_id for s in top] == [0, 1, 2, 3, 4]  # ties broken by video, not storage
    assert len(collapse_spans(hits, NAMES, 256, top_k=n)) == n


def test_excluded_videos_never_take_a_place() -> None:
    rng = np.random.default_rng(3)
    hits = random_hits(rng, 200, 4)
    everything = collapse_spans(hits, NAMES, 256, top_k=3)
    rejected = everything[0].video["uri"]
    kept = collapse_spans(hits, NAMES, 256, top_k=3, exclude=frozenset({rejected}))
    assert len(kept) == 3 and all(s.video["uri"] != rejected for s in kept)
