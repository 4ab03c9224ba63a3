"""The search stage: hashed queries against the reference index a worker process holds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from schemas.manifest import Manifest
from transforms.index import store
from transforms.search.pdq_rows import PDQ_RADIUS
from transforms.search.query import Candidates, HashedQuery
from transforms.search.reference import ReferenceIndex
from transforms.search.spans import Span, collapse_spans, rank_key


class SearchIndex(beam.DoFn):
    """Searches hashed queries in the reference index, loaded once per worker process.

    Emits ``Candidates``: the spans within the radius, and with ``rescue_k`` the nearest
    rows of queries that had none, or whose best span is further than ``rescue_above``
    bits (weak evidence the verification stage may reject), for it to re-check.

    With ``refresh_s`` (the streaming job), the manifest is re-read at most that often and
    a newer index (a nightly run added a batch) is loaded in place of the old one, so a
    long-running job matches against the latest archive without a restart.
    """

    def __init__(self, index_dir: str, manifest: Manifest, shared: Shared, threshold: int,
                 top_k: int, refresh_s: float | None = None, rescue_k: int = 0,
                 rescue_radius: int = 0, rescue_above: int = 0):
        self.index_dir = index_dir
        self.manifest = manifest
        self.shared = shared
        self.threshold = threshold
        self.top_k = top_k
        self.refresh_s = refresh_s
        self.rescue_k = rescue_k
        self.rescue_radius = rescue_radius
        self.rescue_above = rescue_above
        self.reloads = Metrics.counter("match", "index_reloads")
        self.search_ms = Metrics.distribution("match", "search_ms")
        self.candidates = Metrics.distribution("match", "pairs_within_radius")

    def setup(self) -> None:
        self._load(self.manifest)

    def _load(self, manifest: Manifest) -> None:
        self.ref = self.shared.acquire(lambda: ReferenceIndex.load(self.index_dir, manifest),
                                       tag=f"{self.index_dir}@{manifest.version}")
        self.loaded_version = manifest.version
        self.radius = self.threshold + manifest.prune_d
        self.n_bits = 8 * self.ref.mih.n_bytes
        self.checked_at = time.monotonic()

    def _refresh(self) -> None:
        if self.refresh_s is None or time.monotonic() - self.checked_at < self.refresh_s:
            return
        manifest = store.load_manifest(self.index_dir)
        self.checked_at = time.monotonic()
        if manifest and manifest.partitions and manifest.version != self.loaded_version:
            store.require_compatible(manifest, self.index_dir)
            self._load(manifest)
            self.reloads.inc()

    def process(self, query: HashedQuery) -> Iterator[Candidates]:
        self._refresh()
        began = time.monotonic()
        spans: list[Span] = []
        rescue: list[Span] = []
        if len(query.codes):
            variant, rows, dist = self.ref.search(query.codes, self.radius)
            self.candidates.update(len(rows))
            spans = collapse_spans(self.ref, variant, rows, dist, query.variant_names,
                                   self.n_bits, self.top_k)
            spans = self._pdq_spans(query) + spans
            spans = sorted(spans, key=rank_key)[: self.top_k]
            if self.rescue_k and (not spans or spans[0].distance > self.rescue_above):
                variant, rows, dist = self.ref.nearest(query.codes, self.rescue_k,
                                                       self.rescue_radius)
                rescue = collapse_spans(self.ref, variant, rows, dist, query.variant_names,
                                        self.n_bits, self.rescue_k)
        self.search_ms.update(int((time.monotonic() - began) * 1000))
        yield Candidates(query, spans, rescue)

    def _pdq_spans(self, query: HashedQuery) -> list[Span]:
        """Spans among imported PDQ-only rows (received hash lists), at Meta's PDQ radius."""
        if self.ref.pdq is None or query.pdq_codes is None or not len(query.pdq_codes):
            return []
        variant, rows, dist = self.ref.pdq.search(query.pdq_codes, PDQ_RADIUS)
        return collapse_spans(self.ref, variant, rows, dist, query.pdq_variant_names,
                              self.n_bits, self.top_k, hasher="pdq")
