"""Exact Hamming range search over packed binary codes by multi-index hashing.

The match job asks, for every query variant of a posted image, which indexed frame hashes
lie within a Hamming radius (256-bit PDQ as (N, 32) uint8, 64-bit pHash as (N, 8) uint8).
A linear scan costs N popcounts per query; multi-index hashing (Norouzi, Punjani & Fleet,
"Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012) looks up only the rows
that agree with the query almost exactly on at least one of ``m`` bands of bits, then
verifies those candidates with a full popcount. The answer is exact, never approximate:

    Split the bits into m disjoint bands, so d(x, y) = sum_j d_j(x, y). Write the radius
    as R = m*r + a with 0 <= a < m, and probe bands 0..a with sub-radius r and the others
    with r - 1. If a pair within R were found by no band, then d_j >= r + 1 on the a + 1
    first bands and d_j >= r on the rest, so d >= (a + 1)(r + 1) + (m - a - 1) r
    = m*r + a + 1 > R: a contradiction. So every pair within R has a band whose value lies
    within that band's sub-radius of the query's, and probing every value at that distance
    finds it. Verification drops the false candidates; deduplication drops the rows found
    on several bands. (Radius 0 probes one band only: all bands must match, so any one will.)

Each band is a CSR table: ``offsets`` (2**width + 1 entries) into the row ids sorted by band
value, built by a sort and a bincount, so a bucket lookup is two array reads and memory is
O(N) per band plus the fixed table. The index is immutable once built, so one instance can
serve every thread of a worker process (the match job shares it with Beam's ``Shared``).

Hot keys: degenerate frames (black, static footage, a bumper shared by many videos) put many
rows behind one band value. Identical rows are indexed once (one distinct code, expanded to
its rows only when it matches). Near-identical ones still crowd a bucket: they are never
dropped -- the search stays exact -- but a query near them examines each of them on every
band. Candidates are therefore verified in chunks of at most ``chunk`` (a huge bucket is
cut into pieces), which bounds memory whatever the data, and ``search_with_stats`` reports
the candidates examined per query so the caller can see and log the cost of such queries.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

import numpy as np

MAX_BAND_BITS = 24  # a band value must fit a 4-byte window; its table has 2**width + 1 entries
DEFAULT_MAX_BAND_BITS = 20  # 2**20 offsets (4 MiB) per band: the widest a default picks
DEFAULT_CHUNK = 1 << 16  # candidates verified at once: a few MB of temporaries, cache-sized
_PROBE_BUDGET = 1 << 20  # (query, probe) pairs looked up at once, which sets the query chunk

Matches = tuple[np.ndarray, np.ndarray, np.ndarray]

@dataclass(frozen=True)
class SearchStats:
    """The work one search did: what the radius cost, and which queries hit hot keys."""

    probes_per_query: int  # bucket lookups per query
    candidates: np.ndarray  # (Q,) int64: distinct codes verified per query, once per band found
    matches: int  # distinct (query, row) pairs within the radius

    @property
    def mean_candidates(self) -> float:
        return float(self.candidates.mean()) if self.candidates.size else 0.0


def default_bands(n_bits: int, n_rows: int) -> int:
    """Bands of about log2(N) bits (Norouzi et al.'s choice), so a bucket holds about one row.

    Narrower bands mean crowded buckets (more candidates to verify); wider ones mean more
    probes per query and a bigger fixed table, hence the 8..20-bit clamp. 256-bit PDQ gets
    13 bands of ~20 bits from about 1M rows on, 64-bit pHash 4 bands of 16 bits.
    """
    width = min(DEFAULT_MAX_BAND_BITS, max(8, round(math.log2(max(n_rows, 2)))))
    return min(n_bits, math.ceil(n_bits / width))


def band_radii(radius: int, bands: int) -> list[int]:
    """Sub-radius per band (-1: not probed) under which MIH stays exact; see the module doc."""
    r, a = divmod(radius, bands)
    return [r] * (a + 1) + [r - 1] * (bands - a - 1)


@lru_cache(maxsize=64)
def _probe_masks(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit XOR mask of at most ``radius`` bits set (read-only, cached)."""
    values = np.arange(1 << width, dtype=np.uint32)
    masks = values[np.bitwise_count(values) <= radius]
    masks.flags.writeable = False
    return masks


def _band_values(codes: np.ndarray, start: int, width: int) -> np.ndarray:
    """The ``width`` bits from bit ``start`` (big-endian, as PDQ hex reads) of each code."""
    first, last = start // 8, (start + width - 1) // 8
    values = np.zeros(len(codes), dtype=np.uint32)
    for byte in range(first, last + 1):
        values <<= 8
        values |= codes[:, byte]
    values >>= (last + 1) * 8 - (start + width)
    values &= (1 << width) - 1
    return values


def flip_bits(codes: np.ndarray, n_flips: np.ndarray | int, rng: np.random.Generator,
              *, chunk: int = 1 << 16) -> np.ndarray:
    """Copies of (N, B) uint8 codes with exactly ``n_flips`` (per row, or one for all) distinct
    random bits flipped: near-duplicates at a known Hamming distance, for tests and benches."""
    n_rows, n_bits = len(codes), 8 * codes.shape[1]
    n_flips = np.broadcast_to(n_flips, (n_rows,))
    out = codes.copy()
    for r0 in range(0, n_rows, chunk):
        keys = rng.random((min(chunk, n_rows - r0), n_bits))
        ranked = np.sort(keys, axis=1)
        ranked = np.hstack([ranked, np.full((len(keys), 1), np.inf)])  # k = n_bits flips all
        kth = ranked[np.arange(len(keys)), n_flips[r0:r0 + chunk]]  # exactly k keys lie below
        out[r0:r0 + chunk] ^= np.packbits(keys < kth[:, None], axis=1)
    return out


def _as_words(codes: np.ndarray) -> np.ndarray:
    """(N, B) uint8 as (N, ceil(B/8)) uint64 for an 8-bytes-at-a-time popcount.

    Zero padding leaves XOR distances unchanged; the byte order within a word does not matter
    to a popcount. A contiguous input whose width is a multiple of 8 is viewed, not copied.
    """
    pad = -codes.shape[1] % 8
    if pad:
        codes = np.pad(codes, ((0, 0), (0, pad)))
    return np.ascontiguousarray(codes).view(np.uint64)


def _check_codes(codes: np.ndarray, n_bytes: int | None = None) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ValueError(f"codes must be a 2-D uint8 array, got {codes.dtype} {codes.shape}")
    if n_bytes is not None and codes.shape[1] != n_bytes:
        raise ValueError(f"queries have {codes.shape[1]} bytes per code, the index {n_bytes}")
    return codes


def _empty_matches() -> Matches:
    return np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, np.int32)


def _sorted_unique(query_idx: np.ndarray, row_idx: np.ndarray, dist: np.ndarray, n_rows: int
                   ) -> Matches:
    """Matches ordered by (query, row) with repeated pairs (same distance) dropped."""
    key = query_idx.astype(np.int64) * n_rows + row_idx
    order = np.argsort(key)
    key = key[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    first = order[first]
    return query_idx[first].astype(np.intp), row_idx[first].astype(np.intp), dist[first]


def _verify(words: np.ndarray, query_words: np.ndarray, query_idx: np.ndarray,
            row_idx: np.ndarray, radius: int) -> Matches:
    """The (query, row) pairs within ``radius``, by a full popcount of each pair's XOR.

    ``take`` rather than fancy indexing, and a sum by columns rather than ``sum(axis=1)``
    over a 4-wide axis: both are several times faster on these shapes.
    """
    diff = words.take(row_idx, axis=0)
    diff ^= query_words.take(query_idx, axis=0)
    bits = np.bitwise_count(diff)
    dist = bits[:, 0].astype(np.int32)
    for w in range(1, bits.shape[1]):
        dist += bits[:, w]
    keep = dist <= radius
    return query_idx[keep], row_idx[keep], dist[keep]


def _concat(parts: list[Matches], n_rows: int) -> Matches:
    if not parts:
        return _empty_matches()
    return _sorted_unique(*(np.concatenate(column) for column in zip(*parts, strict=True)), n_rows)


def _distance_blocks(codes: np.ndarray, queries: np.ndarray, rows_per_block: int,
                     queries_per_block: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(row start, query start, (q, r) uint16 distances)`` of every block of the full scan.

    The one popcount scan of the project: rows transposed in cache-sized blocks so each
    64-bit word is one contiguous array, a uint16 accumulator, about 3x faster than one big
    broadcast and with bounded memory.
    """
    words, query_words = _as_words(codes), _as_words(queries)
    for r0 in range(0, len(codes), rows_per_block):
        columns = words[r0:r0 + rows_per_block].T.copy()
        for q0 in range(0, len(queries), queries_per_block):
            block = query_words[q0:q0 + queries_per_block]
            xor = np.empty((len(block), columns.shape[1]), dtype=np.uint64)
            dist = np.zeros(xor.shape, dtype=np.uint16)
            for w, column in enumerate(columns):
                np.bitwise_xor(block[:, w, None], column, out=xor)
                dist += np.bitwise_count(xor)
            yield r0, q0, dist


def brute_force(codes: np.ndarray, queries: np.ndarray, radius: int, *,
                rows_per_block: int = 4096, queries_per_block: int = 32) -> Matches:
    """Reference linear scan: every (query, row, distance) with distance <= radius.

    Same return shape and order as ``HammingIndex.search``.
    """
    codes = _check_codes(codes)
    queries = _check_codes(queries, codes.shape[1])
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    parts = []
    for r0, q0, dist in _distance_blocks(codes, queries, rows_per_block, queries_per_block):
        q, r = np.nonzero(dist <= radius)
        parts.append((q + q0, r + r0, dist[q, r].astype(np.int32)))
    return _concat(parts, len(codes))


def nearest_rows(codes: np.ndarray, queries: np.ndarray, k: int, max_distance: int, *,
                 rows_per_block: int = 4096) -> Matches:
    """The ``k`` rows nearest to any of ``queries`` (within ``max_distance``), by a scan.

    Returns (query that is nearest to the row, row, distance), nearest rows first; ties go
    to the lower row, and a row's query is the first of its nearest.
    """
    codes = _check_codes(codes)
    queries = _check_codes(queries, codes.shape[1])
    if len(codes) == 0 or len(queries) == 0:
        return _empty_matches()
    best = np.empty(len(codes), dtype=np.int32)
    nearest_query = np.empty(len(codes), dtype=np.intp)
    for r0, _, dist in _distance_blocks(codes, queries, rows_per_block, len(queries)):
        best[r0:r0 + dist.shape[1]] = dist.min(axis=0)
        nearest_query[r0:r0 + dist.shape[1]] = dist.argmin(axis=0)
    order = np.argsort(best, kind="stable")[:k]
    order = order[best[order] <= max_distance]
    return nearest_query[order], order.astype(np.intp), best[order]


def _segment_chunks(query_idx: np.ndarray, start: np.ndarray, count: np.ndarray, chunk: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Expand bucket segments (query, first position, length > 0) into (query, position)
    arrays of at most 2 * ``chunk`` entries each; a segment longer than ``chunk`` is cut first.

    Expansion is a cumulative sum of steps (1 inside a segment, a jump at its first entry)
    rather than ``np.repeat``: most buckets hold a row or two, where repeat is 5x slower.
    """
    if not len(count):
        return
    if (count > chunk).any():
        pieces = -(-count // chunk)
        segment = np.repeat(np.arange(len(count)), pieces)
        piece = np.arange(len(segment)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        query_idx, start = query_idx[segment], start[segment] + piece * chunk
        count = np.minimum(count[segment] - piece * chunk, chunk)
    first = np.cumsum(count) - count  # of each segment among all entries
    bounds = np.unique(np.searchsorted(first, np.arange(0, first[-1] + 1, chunk)))
    for lo, hi in zip(bounds, [*bounds[1:], len(count)], strict=True):
        at = first[lo:hi] - first[lo]
        total = at[-1] + count[hi - 1]
        positions = np.ones(total, dtype=np.int64)
        last = start[lo:hi - 1] + count[lo:hi - 1] - 1  # of the segment before
        positions[at] = start[lo:hi] - np.concatenate(([0], last))
        queries = np.zeros(total, dtype=np.intp)
        queries[at] = np.diff(query_idx[lo:hi], prepend=0)
        yield np.cumsum(queries, out=queries), np.cumsum(positions, out=positions)


def _group_identical(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct codes, row ids grouped by code, (D + 1,) group offsets into them)."""
    keys = np.ascontiguousarray(codes).view(f"V{codes.shape[1]}").ravel()
    distinct, inverse = np.unique(keys, return_inverse=True)
    members = np.argsort(inverse, kind="stable").astype(np.uint32)
    offsets = np.zeros(len(distinct) + 1, dtype=np.uint32)
    offsets[1:] = np.cumsum(np.bincount(inverse, minlength=len(distinct)))
    return distinct.view(np.uint8).reshape(len(distinct), codes.shape[1]), members, offsets


class HammingIndex:
    """Multi-index hash over (N, B) uint8 codes; row ids are positions 0..N-1.

    Identical rows (the same bumper in many videos, a static shot) are indexed once, as one
    distinct code with its list of rows: the worst hot keys then cost one candidate, not
    thousands, and the rows are expanded only for codes that match.

    Memory, per row: a uint32 in the row lists; per distinct code: the code (B bytes,
    padded to a multiple of 8), one uint32 id per band and a uint32 group offset; per
    band a fixed 2**width + 1 uint32 offset table. ``nbytes`` adds them up. Build cost: one
    sort of the codes to group them, then one sort of D band values per band.
    """

    def __init__(self, codes: np.ndarray, *, bands: int | None = None) -> None:
        codes = _check_codes(codes)
        n_rows, n_bytes = codes.shape
        if n_rows >= 1 << 32:
            raise ValueError("row ids are uint32: at most 2**32 - 1 rows per index")
        n_bits = 8 * n_bytes
        m = default_bands(n_bits, n_rows) if bands is None else bands
        if not 1 <= m <= n_bits or -(-n_bits // m) > MAX_BAND_BITS:
            raise ValueError(f"{m} bands of {n_bits} bits: need 1..{n_bits} bands of "
                             f"<= {MAX_BAND_BITS} bits")
        widths = [n_bits // m + (j < n_bits % m) for j in range(m)]
        self.n_rows, self.n_bytes = n_rows, n_bytes
        self.bands = list(zip(accumulate(widths, initial=0), widths, strict=False))  # (bit, width)
        distinct, self._members, self._group_offsets = _group_identical(codes)
        self.n_distinct = len(distinct)
        self._words = _as_words(distinct)
        self._ids = np.empty((m, self.n_distinct), dtype=np.uint32)  # distinct ids, by band value
        self._offsets = []
        for j, (start, width) in enumerate(self.bands):
            values = _band_values(distinct, start, width)
            self._ids[j] = np.argsort(values)  # order within a bucket does not matter
            offsets = np.zeros((1 << width) + 1, dtype=np.uint32)
            offsets[1:] = np.cumsum(np.bincount(values, minlength=1 << width))
            self._offsets.append(offsets)
        self._flat_ids = self._ids.reshape(-1)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index (codes, row lists, band tables)."""
        arrays = [self._words, self._members, self._group_offsets, self._ids, *self._offsets]
        return sum(a.nbytes for a in arrays)

    @property
    def largest_bucket(self) -> int:
        """Distinct codes behind the most crowded band value: what a hot key costs per band."""
        return max((int(np.diff(o).max()) for o in self._offsets), default=0)

    def search(self, queries: np.ndarray, radius: int, *, chunk: int = DEFAULT_CHUNK) -> Matches:
        """(query_idx, row_idx, distance) of every pair within ``radius``, sorted, no repeats."""
        return self.search_with_stats(queries, radius, chunk=chunk)[0]

    def search_with_stats(self, queries: np.ndarray, radius: int, *,
                          chunk: int = DEFAULT_CHUNK) -> tuple[Matches, SearchStats]:
        """``search`` plus the work it did (returned, not stored: the index is shared by threads).

        ``chunk`` bounds the candidates verified at once (memory), never which are verified.
        """
        queries = _check_codes(queries, self.n_bytes)
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        radii = band_radii(radius, len(self.bands))
        probed = [(j, _probe_masks(self.bands[j][1], r)) for j, r in enumerate(radii) if r >= 0]
        n_probes = sum(len(masks) for _, masks in probed)
        query_words = _as_words(queries)
        candidates = np.zeros(len(queries), dtype=np.int64)
        parts = []
        step = max(1, _PROBE_BUDGET // n_probes)
        for q0 in range(0, len(queries), step):
            block = queries[q0:q0 + step]
            query_idx, start, count = self._segments(block, probed)
            candidates[q0:q0 + len(block)] = np.bincount(query_idx, weights=count,
                                                         minlength=len(block))
            for q, positions in _segment_chunks(query_idx + q0, start, count, chunk):
                parts.append(_verify(self._words, query_words, q, self._flat_ids.take(positions),
                                     radius))
        matches = self._expand(*_concat(parts, self.n_distinct))
        return matches, SearchStats(n_probes, candidates, len(matches[0]))

    def _expand(self, query_idx: np.ndarray, distinct_idx: np.ndarray, dist: np.ndarray
                ) -> Matches:
        """Matches on distinct codes as matches on every row holding that code."""
        first = self._group_offsets[distinct_idx].astype(np.int64)
        count = self._group_offsets[distinct_idx + 1] - first
        end = np.cumsum(count)
        positions = np.repeat(first - (end - count), count) + np.arange(end[-1] if len(end) else 0)
        return _sorted_unique(np.repeat(query_idx, count), self._members.take(positions),
                              np.repeat(dist, count), self.n_rows)

    def _segments(self, block: np.ndarray, probed: list[tuple[int, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-empty buckets the block's queries probe: (query in block, position, length)."""
        query_idx, start, count = [np.empty(0, np.intp)], [np.empty(0, np.int64)], [
            np.empty(0, np.int64)]
        for j, masks in probed:
            band_start, width = self.bands[j]
            probes = (_band_values(block, band_start, width)[:, None] ^ masks).ravel()
            offsets = self._offsets[j]
            lo = offsets.take(probes)
            n = offsets[1:].take(probes)
            n -= lo
            hit = np.flatnonzero(n != 0)  # numpy finds the True of a bool array ~10x faster
            query_idx.append(hit // len(masks))
            start.append(lo.take(hit) + np.int64(j * self.n_distinct))
            count.append(n.take(hit).astype(np.int64))
        return np.concatenate(query_idx), np.concatenate(start), np.concatenate(count)
