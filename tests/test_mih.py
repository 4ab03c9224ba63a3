"""Multi-index hashing must return exactly what a linear scan returns, whatever the data.

Property tests over seeded random data (several seeds per case): random codes, clustered
near-duplicates, degenerate hot keys, queries that are flipped index rows, radii from 0 to
beyond the code length, explicit and default band splits (including bands that straddle
bytes and codes whose width is not a multiple of 8 bytes), and empty inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from transforms.search.mih import (
    HammingIndex,
    band_radii,
    brute_force,
    flip_bits,
    nearest_rows,
)

SEEDS = [0, 1, 2]


def naive(codes: np.ndarray, queries: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    """Every pair within radius, from unpacked bits: independent of the module's popcounts."""
    bits, query_bits = np.unpackbits(codes, axis=1), np.unpackbits(queries, axis=1)
    dist = (query_bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    return {(int(q), int(r), int(dist[q, r])) for q, r in zip(*np.nonzero(dist <= radius),
                                                                 strict=True)}


def as_set(matches: tuple[np.ndarray, np.ndarray, np.ndarray]) -> set[tuple[int, int, int]]:
    found = list(zip(*(column.tolist() for column in matches), strict=True))
    assert len(found) == len(set(found)), "repeated (query, row) pair"
    return set(found)


def assert_exact(index: HammingIndex, codes: np.ndarray, queries: np.ndarray, radius: int,
                 **search_kwargs) -> None:
    """Same pairs and distances in the same (query, row) order, none repeated."""
    got = index.search(queries, radius, **search_kwargs)
    want = brute_force(codes, queries, radius)
    pairs = got[0] * len(codes) + got[1]
    assert len(np.unique(pairs)) == len(pairs), "repeated (query, row) pair"
    for column, expected in zip(got, want, strict=True):
        np.testing.assert_array_equal(column, expected)


def random_codes(rng: np.random.Generator, n: int, n_bytes: int) -> np.ndarray:
    return rng.integers(0, 256, (n, n_bytes), dtype=np.uint8)


def clustered_codes(rng: np.random.Generator, n: int, n_bytes: int) -> np.ndarray:
    """A few centres, each with copies at 0..40 random bit flips (near-duplicate frames)."""
    centres = random_codes(rng, 8, n_bytes)
    return flip_bits(centres[rng.integers(0, 8, n)], rng.integers(0, 41, n), rng)


def degenerate_codes(rng: np.random.Generator, n: int, n_bytes: int) -> np.ndarray:
    """All-zero, all-one and many identical rows (black frames, static footage): hot keys."""
    static = random_codes(rng, 1, n_bytes)
    rows = [np.zeros((n // 4, n_bytes), np.uint8), np.full((n // 4, n_bytes), 255, np.uint8),
            np.repeat(static, n // 4, axis=0), random_codes(rng, n - 3 * (n // 4), n_bytes)]
    return np.concatenate(rows)[rng.permutation(n)]


GENERATORS = [random_codes, clustered_codes, degenerate_codes]


def variant_queries(rng: np.random.Generator, codes: np.ndarray, n: int, radius: int
                    ) -> np.ndarray:
    """Index rows flipped by 0..radius+4 bits (both sides of the radius), plus random codes."""
    picks = codes[rng.integers(0, len(codes), n)]
    flipped = flip_bits(picks, rng.integers(0, min(radius + 4, 8 * codes.shape[1]) + 1, n), rng)
    return np.concatenate([flipped, random_codes(rng, n // 4, codes.shape[1])])


def test_brute_force_agrees_with_unpacked_bits() -> None:
    rng = np.random.default_rng(7)
    for n_bytes, radius in [(32, 39), (8, 10), (5, 12), (32, 0)]:
        codes = clustered_codes(rng, 300, n_bytes)
        queries = variant_queries(rng, codes, 40, radius)
        assert as_set(brute_force(codes, queries, radius)) == naive(codes, queries, radius)


@pytest.mark.parametrize("generate", GENERATORS)
@pytest.mark.parametrize(("n_bytes", "bands", "radius"), [
    (32, None, 0), (32, None, 7), (32, None, 39), (32, 16, 39), (32, 13, 39), (32, 16, 100),
    (8, None, 0), (8, None, 3), (8, None, 10), (8, 4, 10), (8, 5, 10), (8, 8, 70),
    (5, 3, 12),
])
def test_search_equals_brute_force(generate, n_bytes: int, bands: int | None, radius: int
                                   ) -> None:
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        codes = generate(rng, 1500, n_bytes)
        index = HammingIndex(codes, bands=bands)
        assert_exact(index, codes, variant_queries(rng, codes, 120, radius), radius)


@pytest.mark.parametrize("seed", SEEDS)
def test_hot_keys_stay_exact_in_small_chunks(seed: int) -> None:
    """Crowded buckets (identical rows, and a static shot's codes 0..2 bits apart) are cut
    into chunks, never dropped; the stats count every distinct code each band yields."""
    rng = np.random.default_rng(seed)
    static = random_codes(rng, 1, 32)
    noisy_static = flip_bits(np.repeat(static, 1000, axis=0), rng.integers(0, 3, 1000), rng)
    codes = np.concatenate([degenerate_codes(rng, 1000, 32), noisy_static])
    queries = np.concatenate([static, np.zeros((1, 32), np.uint8), codes[:30]])
    index = HammingIndex(codes, bands=16)
    assert index.largest_bucket >= 200
    assert_exact(index, codes, queries, 39, chunk=37)

    _, stats = index.search_with_stats(queries, 39, chunk=37)
    assert stats.candidates[0] > 10 * 37
    # Candidates of a query: on each probed band, the distinct codes within its sub-radius.
    bits, query_bits = np.unpackbits(np.unique(codes, axis=0), axis=1), np.unpackbits(queries,
                                                                                      axis=1)
    want = np.zeros(len(queries), dtype=np.int64)
    for (start, width), r in zip(index.bands, band_radii(39, 16), strict=True):
        band = slice(start, start + width)
        band_dist = (query_bits[:, None, band] != bits[None, :, band]).sum(axis=2)
        want += (band_dist <= r).sum(axis=1)
    np.testing.assert_array_equal(stats.candidates, want)
    assert stats.matches == len(index.search(queries, 39)[0])


@pytest.mark.parametrize(("radius", "bands"), [(0, 16), (15, 16), (16, 16), (39, 13), (39, 16),
                                               (10, 4), (3, 5), (100, 13), (255, 16)])
def test_band_radii_are_just_tight_enough(radius: int, bands: int) -> None:
    """Pigeonhole: rows further than r_j on every band are further than the radius overall,
    exactly when sum(r_j + 1) = radius + 1 (more would probe needlessly, less would miss)."""
    radii = band_radii(radius, bands)
    assert len(radii) == bands
    assert sum(r + 1 for r in radii) == radius + 1
    assert max(radii) - min(radii) <= 1


def test_empty_index_and_empty_queries() -> None:
    rng = np.random.default_rng(0)
    codes = random_codes(rng, 50, 32)
    empty = np.zeros((0, 32), np.uint8)
    for index_codes, queries in [(empty, codes), (codes, empty), (empty, empty)]:
        q, r, d = HammingIndex(index_codes).search(queries, 39)
        assert len(q) == len(r) == len(d) == 0
        assert as_set(brute_force(index_codes, queries, 39)) == set()
    _, stats = HammingIndex(codes).search_with_stats(empty, 39)
    assert stats.candidates.shape == (0,) and stats.mean_candidates == 0.0


def test_rejects_bad_input() -> None:
    codes = np.zeros((10, 32), np.uint8)
    with pytest.raises(ValueError):
        HammingIndex(codes.astype(np.int64))
    with pytest.raises(ValueError):
        HammingIndex(codes, bands=8)  # 32-bit bands: an offset table of 2**32 entries
    index = HammingIndex(codes)
    with pytest.raises(ValueError):
        index.search(np.zeros((3, 8), np.uint8), 5)
    with pytest.raises(ValueError):
        index.search(codes, -1)


def test_flip_bits_flips_exactly_n_distinct_bits() -> None:
    rng = np.random.default_rng(3)
    codes = random_codes(rng, 500, 32)
    n_flips = rng.integers(0, 257, 500)
    flipped = flip_bits(codes, n_flips, rng, chunk=64)
    np.testing.assert_array_equal(np.unpackbits(codes ^ flipped, axis=1).sum(axis=1), n_flips)


def test_nearest_rows_is_the_naive_nearest_neighbour_scan() -> None:
    """The k rows nearest to any query, ties to the lower row and the first query."""
    rng = np.random.default_rng(4)
    codes = random_codes(rng, 3000, 32)
    codes[1000:1010] = flip_bits(codes[1000:1001].repeat(10, axis=0), 3, rng)  # ties at 3
    queries = np.vstack([codes[1000], flip_bits(codes[2000:2001], 5, rng)[0]])
    dist = np.unpackbits(codes[None] ^ queries[:, None], axis=2).sum(axis=2)  # (Q, N)
    best, which = dist.min(axis=0), dist.argmin(axis=0)
    order = np.argsort(best, kind="stable")[:12]
    query, row, got = nearest_rows(codes, queries, 12, 256, rows_per_block=512)
    assert row.tolist() == order.tolist()
    assert got.tolist() == best[order].tolist() and query.tolist() == which[order].tolist()
    _, far, _ = nearest_rows(codes, queries, 12, 4)  # only rows within 4 bits
    assert far.tolist() == [r for r in order.tolist() if best[r] <= 4]
