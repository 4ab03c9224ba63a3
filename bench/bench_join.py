"""The match join at archive scale: multi-index hashing against two exact linear scans.

Run ``python -m bench.bench_join``. One run builds a 1M-row PDQ-sized index -- clusters of
near-duplicate frames (random centres, copies at 0..40 bit flips, as consecutive frames of
a shot are) plus 2 % degenerate hot rows (identical black and white frames, a static shot
with 0..3 bits of noise: near-identical codes crowding the same buckets) -- and runs 10k
queries at the match job's default radius (threshold + prune_d): half are index rows with 0..40
flips, half random codes. Arms, all single-threaded and exact:

- MIH with the default bands, and with 16 bands of 16 bits (the textbook split) beside it;
- numpy brute force (``transforms.search.mih.brute_force``) on a query subsample, scaled per query;
- ``faiss.IndexBinaryFlat.range_search`` (one OpenMP thread; its radius is exclusive).

Every arm's matches are checked against the default MIH's on the queries it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from pipelines.match import DEFAULT_THRESHOLD
from transforms.hashing.pruning import DEFAULT_PRUNE_D
from transforms.search.mih import HammingIndex, Matches, brute_force, flip_bits

N_ROWS = 1_000_000
N_QUERIES = 10_000
N_BYTES = 32
RADIUS = DEFAULT_THRESHOLD + DEFAULT_PRUNE_D  # the match job's default search radius
MAX_FLIPS = 40
HOT_FRACTION = 0.02
BRUTE_SAMPLE = 1000  # queries for the numpy scan: all 10k would take minutes


def synthetic_archive(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    """Shots of 1..40 near-duplicate frames around random centres, plus hot degenerate rows."""
    n_hot = int(n_rows * HOT_FRACTION)
    n_shot_rows = n_rows - n_hot
    sizes = rng.integers(1, 41, size=n_shot_rows // 10 + 1)  # ~2x the rows needed; cut below
    shot = np.repeat(np.arange(len(sizes)), sizes)[:n_shot_rows]
    centres = rng.integers(0, 256, (shot[-1] + 1, N_BYTES), dtype=np.uint8)
    frames = flip_bits(centres[shot], rng.integers(0, MAX_FLIPS + 1, n_shot_rows), rng)
    n_static = n_hot - n_hot // 2 - n_hot // 4
    static = np.repeat(rng.integers(0, 256, (1, N_BYTES), dtype=np.uint8), n_static, axis=0)
    hot = [np.zeros((n_hot // 2, N_BYTES), np.uint8), np.full((n_hot // 4, N_BYTES), 255, np.uint8),
           flip_bits(static, rng.integers(0, 4, n_static), rng)]  # a static shot, 0..3 bits noise
    return np.concatenate([frames, *hot])[rng.permutation(n_rows)]


def synthetic_queries(rng: np.random.Generator, codes: np.ndarray, n: int) -> np.ndarray:
    """Half index rows with 0..40 flips (edited posts), half random codes (unrelated posts)."""
    near = flip_bits(codes[rng.integers(0, len(codes), n // 2)],
                     rng.integers(0, MAX_FLIPS + 1, n // 2), rng)
    return np.concatenate([near, rng.integers(0, 256, (n - n // 2, N_BYTES), dtype=np.uint8)])


def timed(run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def same(a: Matches, b: Matches) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def subset(matches: Matches, queries: np.ndarray) -> Matches:
    """The matches of some queries, renumbered as positions in ``queries`` (sorted)."""
    keep = np.isin(matches[0], queries)
    return np.searchsorted(queries, matches[0][keep]), matches[1][keep], matches[2][keep]


def faiss_search(codes: np.ndarray, queries: np.ndarray) -> tuple[Matches, float, float]:
    """(matches, build s, search s) of faiss's flat binary index, as sorted (q, row, dist)."""
    import faiss

    faiss.omp_set_num_threads(1)
    index, build = timed(lambda: faiss.IndexBinaryFlat(8 * N_BYTES))
    _, add = timed(lambda: index.add(codes))
    (limits, dist, rows), seconds = timed(lambda: index.range_search(queries, RADIUS + 1))
    query_idx = np.repeat(np.arange(len(queries)), np.diff(limits).astype(np.int64))
    order = np.lexsort((rows, query_idx))
    return (query_idx[order], rows[order], dist[order].astype(np.int32)), build + add, seconds


def main(n_rows: int = N_ROWS) -> dict[str, str]:
    """Prints the arms on an index of ``n_rows``; returns the headline figures."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    codes = synthetic_archive(rng, n_rows)
    queries = synthetic_queries(rng, codes, N_QUERIES)
    gen = time.perf_counter() - start
    print(f"data: {n_rows:,} rows x {N_BYTES * 8} bits, {N_QUERIES:,} queries, radius {RADIUS} "
          f"(generated in {gen:.1f} s)")

    index, build = timed(lambda: HammingIndex(codes))
    (reference, stats), seconds = timed(lambda: index.search_with_stats(queries, RADIUS))
    near, far = stats.candidates[:N_QUERIES // 2], stats.candidates[N_QUERIES // 2:]
    mih_per_query = seconds / N_QUERIES
    print(f"default MIH: {len(index.bands)} bands of {index.bands[0][1]} bits or fewer; "
          f"{stats.probes_per_query} probes/query; largest bucket {index.largest_bucket:,} codes; "
          f"{stats.matches:,} matches")
    print(f"candidates/query: mean {stats.mean_candidates:,.0f} (near-duplicate queries "
          f"{near.mean():,.0f}, random {far.mean():,.0f}), "
          f"median {np.median(stats.candidates):,.0f}, max {stats.candidates.max():,}")
    arms = [("MIH default", N_QUERIES, seconds, build, index.nbytes, stats.mean_candidates, "ref")]

    textbook, build16 = timed(lambda: HammingIndex(codes, bands=16))
    (matches16, stats16), seconds16 = timed(lambda: textbook.search_with_stats(queries, RADIUS))
    arms.append(("MIH 16x16 bits", N_QUERIES, seconds16, build16, textbook.nbytes,
                 stats16.mean_candidates, same(matches16, reference)))

    sample = np.sort(rng.choice(N_QUERIES, BRUTE_SAMPLE, replace=False))
    brute, seconds_bf = timed(lambda: brute_force(codes, queries[sample], RADIUS))
    arms.append((f"numpy brute force ({BRUTE_SAMPLE} q)", BRUTE_SAMPLE, seconds_bf, 0.0,
                 codes.nbytes, n_rows, same(brute, subset(reference, sample))))

    faiss_matches, build_f, seconds_f = faiss_search(codes, queries)
    arms.append(("faiss IndexBinaryFlat, 1 thread", N_QUERIES, seconds_f, build_f, codes.nbytes,
                 n_rows, same(faiss_matches, reference)))

    brute_per_query = seconds_bf / BRUTE_SAMPLE
    print(f"\n{'arm':34s} {'queries':>8s} {'search s':>9s} {'us/query':>9s} {'vs numpy':>9s} "
          f"{'build s':>8s} {'bytes/row':>10s} {'cand/query':>11s} {'same as MIH':>11s}")
    for name, n, secs, build_s, nbytes, cand, ok in arms:
        per_query = secs / n
        print(f"{name:34s} {n:8,d} {secs:9.2f} {per_query * 1e6:9.0f} "
              f"{brute_per_query / per_query:8.1f}x {build_s:8.2f} {nbytes / n_rows:10.1f} "
              f"{cand:11,.0f} {ok!s:>11s}")
    tables = sum(4 * ((1 << width) + 1) for _, width in index.bands)
    print(f"\nMIH default: {index.nbytes / n_rows:.1f} bytes per indexed row, of which "
          f"{tables / n_rows:.1f} are the fixed offset tables ({tables / 2**20:.0f} MiB); "
          f"{1 / mih_per_query:,.0f} queries/s; {brute_per_query / mih_per_query:.1f}x numpy, "
          f"{(seconds_f / N_QUERIES) / mih_per_query:.1f}x faiss flat.")
    identical = all(ok in ("ref", True) for *_, ok in arms)
    return {f"MIH join vs numpy brute force, {n_rows:,} rows (goal >= 10x)":
            f"{brute_per_query / mih_per_query:.1f}x, same results: {'yes' if identical else 'NO'}",
            "MIH join vs faiss IndexBinaryFlat (1 thread)":
            f"{(seconds_f / N_QUERIES) / mih_per_query:.1f}x",
            "MIH candidates/query, bytes/row": f"{stats.mean_candidates:,.0f}, "
            f"{index.nbytes / n_rows:.1f}"}


if __name__ == "__main__":
    main()
