"""The search stage: hashed queries against the sharded index, as a distributed join.

    hashed queries ─FanOutToShards─> ((shard, bucket), query) ─GroupByKey─> SearchShards
      ─> (query, hits of one shard) ─CoGroupByKey with the query─> MergeHits ─> spans

Each query goes to every live shard; queries are grouped by shard so that a worker answers
many with one loaded shard (``transforms.search.shards.ShardCache``: loaded once per
process, least recently used shards out when ``max_index_memory_mb`` is reached), and
spread over ``QUERY_BUCKETS`` groups per shard so that one shard's queries can keep several
workers busy; the hits of all shards meet again per query and become ranked spans. Queries
the hashes could not place go round once more for the nearest rows of each shard (the
"rescue" candidates of the verification stage).

In a stream, ``FanOutToShards`` re-reads the manifest every ``refresh_s``: a nightly run's
new shards get queries from then on, and ``SearchShards`` loads them in the background as
soon as it sees them listed, so no query waits for a reload of the index.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from schemas.manifest import Manifest
from transforms.hashing.hashes import HASHERS
from transforms.index import store
from transforms.search.query import Candidates, HashedQuery
from transforms.search.shards import Shard, ShardRef, live_shards, shard_cache
from transforms.search.spans import Hits, collapse_spans, rank_key

QUERY_BUCKETS = 8  # groups a shard's queries are spread over (workers that may search it)


class ShardQuery(NamedTuple):
    """What a shard needs of a query: its codes (and PDQ codes), and which search to run."""

    sha256: str
    codes: np.ndarray
    pdq_codes: np.ndarray | None
    nearest: bool = False  # the k nearest rows (rescue) instead of a range search


class _LiveShards:
    """The live shards of an index, re-read from the manifest at most every ``refresh_s``."""

    def __init__(self, index_dir: str, manifest: Manifest, refresh_s: float | None) -> None:
        self.index_dir = index_dir
        self.refresh_s = refresh_s
        self.version = manifest.version
        self.shards = live_shards(index_dir, manifest)
        self.checked_at = time.monotonic()

    def refresh(self) -> bool:
        """Re-read the manifest if it is time; True when the live shards changed."""
        if self.refresh_s is None or time.monotonic() - self.checked_at < self.refresh_s:
            return False
        self.checked_at = time.monotonic()
        manifest = store.load_manifest(self.index_dir)
        if manifest is None or manifest.version == self.version:
            return False
        store.require_compatible(manifest, self.index_dir)
        self.version, self.shards = manifest.version, live_shards(self.index_dir, manifest)
        return True


class FanOutToShards(beam.DoFn):
    """A hashed query → ``((shard name, bucket), (ShardRef, ShardQuery))`` for every live
    shard; the bucket is fixed by the query, so one query meets each shard exactly once."""

    def __init__(self, index_dir: str, manifest: Manifest, refresh_s: float | None = None,
                 nearest: bool = False):
        self.index_dir = index_dir
        self.manifest = manifest
        self.refresh_s = refresh_s
        self.nearest = nearest
        self.refreshes = Metrics.counter("match", "index_refreshes")

    def setup(self) -> None:
        self.live = _LiveShards(self.index_dir, self.manifest, self.refresh_s)

    def process(self, query: HashedQuery
                ) -> Iterator[tuple[tuple[str, int], tuple[ShardRef, ShardQuery]]]:
        if self.live.refresh():
            self.refreshes.inc()
        if not len(query.codes) and (query.pdq_codes is None or not len(query.pdq_codes)):
            return
        part = ShardQuery(query.sha256, query.codes, query.pdq_codes, self.nearest)
        bucket = int(query.sha256[:8], 16) % QUERY_BUCKETS
        for ref in self.live.shards:
            yield (ref.name, bucket), (ref, part)


class SearchShards(beam.DoFn):
    """``((shard, bucket), [(ShardRef, ShardQuery)])`` → ``(sha256, (key hits, PDQ hits))``.

    Shards come from the process's ``ShardCache`` (bounded by ``max_index_bytes``). With
    ``refresh_s`` (streaming) a background thread loads newly listed shards before their
    first queries arrive.
    """

    def __init__(self, index_dir: str, manifest: Manifest, radius: int, max_index_bytes: int,
                 rescue_k: int = 0, rescue_radius: int = 0, refresh_s: float | None = None):
        self.index_dir = index_dir
        self.manifest = manifest
        self.hasher = manifest.key_hasher
        self.radius = radius
        self.max_index_bytes = max_index_bytes
        self.rescue_k = rescue_k
        self.rescue_radius = rescue_radius
        self.refresh_s = refresh_s
        self.loads = Metrics.counter("match", "shards_loaded")
        self.load_ms = Metrics.distribution("match", "shard_load_ms")
        self.memory = Metrics.gauge("match", "index_memory_mb")
        self.search_ms = Metrics.distribution("match", "search_ms_per_query_shard")
        self.pairs = Metrics.distribution("match", "pairs_within_radius_per_shard")

    def setup(self) -> None:
        self.cache = shard_cache()
        self._stop = threading.Event()
        if self.refresh_s is not None:
            threading.Thread(target=self._prefetch, daemon=True).start()

    def teardown(self) -> None:
        self._stop.set()

    def _load(self, ref: ShardRef) -> Shard:
        return Shard.load(ref, self.hasher)

    def _prefetch(self) -> None:
        """Keep loading the live shards that this process does not hold yet (streaming)."""
        live = _LiveShards(self.index_dir, self.manifest, self.refresh_s)
        while not self._stop.wait(self.refresh_s):
            live.refresh()
            for ref in live.shards:
                if not self._stop.is_set() and not self.cache.holds(ref):
                    self.cache.get(ref, self.max_index_bytes, self._load)

    def process(self, element: tuple[tuple[str, int], Iterable[tuple[ShardRef, ShardQuery]]]
                ) -> Iterator[tuple[str, tuple[Hits, Hits]]]:
        _, batch = element
        for ref, query in sorted(batch, key=lambda pair: pair[0].key):
            loads, seconds = self.cache.loads, self.cache.load_seconds
            shard = self.cache.get(ref, self.max_index_bytes, self._load)
            if self.cache.loads > loads:
                self.loads.inc(self.cache.loads - loads)
                self.load_ms.update(int(1000 * (self.cache.load_seconds - seconds)))
                self.memory.set(self.cache.nbytes >> 20)
            began = time.monotonic()
            if query.nearest:
                hits = (shard.nearest(query.codes, self.rescue_k, self.rescue_radius),
                        Hits.empty("pdq"))
            else:
                hits = (shard.search(query.codes, self.radius), shard.search_pdq(query.pdq_codes))
                self.pairs.update(hits[0].size + hits[1].size)
            self.search_ms.update(int(1000 * (time.monotonic() - began)))
            yield query.sha256, hits


class MergeHits(beam.DoFn):
    """A query and the hits of every shard → ``Candidates`` with its ranked spans.

    ``rejected`` (a side input: image sha256 → archive videos an analyst rejected for it)
    names the spans left out before the top ``top_k`` are taken.
    """

    def __init__(self, hasher: str, n_bits: int, top_k: int):
        self.hasher = hasher
        self.n_bits = n_bits
        self.top_k = top_k

    def process(self, element: tuple[str, dict[str, list]], rejected=None
                ) -> Iterator[Candidates]:
        sha256, grouped = element
        (query,) = grouped["query"]
        shard_hits = grouped["hits"]
        exclude = frozenset(rejected[sha256]) if rejected is not None else frozenset()
        key = Hits.concat([key for key, _ in shard_hits], self.hasher)
        pdq = Hits.concat([pdq for _, pdq in shard_hits], "pdq")
        spans = (collapse_spans(pdq, query.pdq_variant_names or [], self.n_bits, self.top_k,
                                exclude=exclude)
                 + collapse_spans(key, query.variant_names, self.n_bits, self.top_k,
                                  exclude=exclude))
        yield Candidates(query, sorted(spans, key=rank_key)[: self.top_k], [])


class MergeNearest(beam.DoFn):
    """Candidates and each shard's nearest rows → the same Candidates with ``rescue`` spans
    made of the ``k`` nearest rows over all shards."""

    def __init__(self, hasher: str, n_bits: int, k: int):
        self.hasher = hasher
        self.n_bits = n_bits
        self.k = k

    def process(self, element: tuple[str, dict[str, list]], rejected=None
                ) -> Iterator[Candidates]:
        sha256, grouped = element
        (candidates,) = grouped["candidates"]
        hits = Hits.concat([key for key, _ in grouped["hits"]], self.hasher)
        nearest = np.lexsort((hits.ts_start, hits.video_id, hits.distance))[: self.k]
        rescue = collapse_spans(hits.take(nearest), candidates.query.variant_names,
                                self.n_bits, self.k,
                                exclude=frozenset(rejected[sha256]) if rejected is not None
                                else frozenset())
        yield candidates._replace(rescue=rescue)


class SearchShardedIndex(beam.PTransform):
    """Hashed queries → ``Candidates``: spans within ``radius`` from every shard, merged;
    with ``rescue_k``, the nearest rows of the queries whose best span is further than
    ``rescue_above`` bits (or that have none) as rescue candidates."""

    def __init__(self, index_dir: str, manifest: Manifest, radius: int, top_k: int,
                 max_index_bytes: int, refresh_s: float | None = None, rescue_k: int = 0,
                 rescue_radius: int = 0, rescue_above: int = 0,
                 rejected: beam.PCollection | None = None):
        super().__init__()
        self.index_dir = index_dir
        self.manifest = manifest
        self.radius = radius
        self.top_k = top_k
        self.max_index_bytes = max_index_bytes
        self.refresh_s = refresh_s
        self.rescue_k = rescue_k
        self.rescue_radius = rescue_radius
        self.rescue_above = rescue_above
        self.rejected = rejected

    def _rejected(self) -> dict:
        """The rejected pairs as a side input looked up by sha256 (not loaded whole)."""
        return {} if self.rejected is None else {
            "rejected": beam.pvalue.AsMultiMap(self.rejected)}

    def _search(self, queries, label: str, nearest: bool):
        return (
            queries
            | f"FanOut{label}" >> beam.ParDo(FanOutToShards(
                self.index_dir, self.manifest, self.refresh_s, nearest=nearest))
            | f"ByShard{label}" >> beam.GroupByKey()
            | f"SearchShards{label}" >> beam.ParDo(SearchShards(
                self.index_dir, self.manifest, self.radius, self.max_index_bytes,
                self.rescue_k, self.rescue_radius, self.refresh_s))
        )

    def expand(self, hashed):
        hasher = self.manifest.key_hasher
        n_bits = HASHERS[hasher].bits
        candidates = (
            {"query": hashed | "KeyBySha" >> beam.Map(lambda q: (q.sha256, q)),
             "hits": self._search(hashed, "", nearest=False)}
            | "JoinHits" >> beam.CoGroupByKey()
            | "Spans" >> beam.ParDo(MergeHits(hasher, n_bits, self.top_k), **self._rejected())
        )
        if not self.rescue_k:
            return candidates
        above = self.rescue_above
        placed, unplaced = candidates | "NeedsRescue" >> beam.Partition(
            lambda c, _: int(len(c.query.codes) > 0
                             and (not c.spans or c.spans[0].distance > above)), 2)
        rescued = (
            {"candidates": unplaced | "KeyUnplaced" >> beam.Map(lambda c: (c.query.sha256, c)),
             "hits": self._search(unplaced | "Queries" >> beam.Map(lambda c: c.query),
                                  "Nearest", nearest=True)}
            | "JoinNearest" >> beam.CoGroupByKey()
            | "RescueSpans" >> beam.ParDo(MergeNearest(hasher, n_bits, self.rescue_k),
                                          **self._rejected())
        )
        return (placed, rescued) | "AllCandidates" >> beam.Flatten()
