"""The query side of the match job: read, deduplicate, hash in variants, search, answer.

Every input URI leaves as exactly one ``QueryRecord`` (matched / no_match / failed); a
failed one also leaves a ``DeadLetter``. Identical re-posts (same sha256) are decoded and
searched once and answered for every URI that carried them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from schemas.manifest import Manifest
from schemas.records import QUERY_SIDECAR_FIELDS, DeadLetter, MatchRecord, QueryRecord
from transforms import hashing, index_store, io, preprocess
from transforms.images import ImageError, load_image
from transforms.matching import ReferenceIndex, Span, collapse_spans
from transforms.pdq_lists import PDQ_MIN_QUALITY, PDQ_RADIUS
from transforms.variants import query_variants, variant_thumbnails
from transforms.verify import query_grey

DEAD = "dead_letter"
QUERIES = "queries"
MAX_IMAGE_BYTES = 200 << 20
DRAFT_SIDE = 1024  # large JPEG posts are decoded at a DCT scale keeping both sides >= this


class HashedQuery(NamedTuple):
    """One distinct image (by content) and the URIs that posted it, hashed in variants."""

    sha256: str
    uris: list[str]
    width: int
    height: int
    variant_names: list[str]
    codes: np.ndarray  # (V, bytes) uint8, only the variants usable as search keys
    n_variants: int  # variants tried, usable or not
    picture: np.ndarray | None  # grey picture for local-feature checks (only with --verify)
    pdq_codes: np.ndarray | None = None  # PDQ of usable variants (only for imported lists)
    pdq_variant_names: list[str] | None = None


class Candidates(NamedTuple):
    """A hashed query with the spans its hashes found and, for the verification stage,
    the nearest rows beyond the radius (when nothing was within it)."""

    query: HashedQuery
    spans: list[Span]
    rescue: list[Span]


def failed(uri: str, sha256: str | None, stage: str, error: str, run_id: str,
           sidecar: dict[str, dict[str, str]]) -> Iterator[Any]:
    """A failed input: its QueryRecord and its dead letter."""
    yield beam.pvalue.TaggedOutput(QUERIES, query_record(
        uri, sha256, "failed", error, None, None, 0, 0, None, run_id, sidecar))
    yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(uri, stage, error, run_id))


def query_record(uri: str, sha256: str | None, status: str, reason: str | None,
                 width: int | None, height: int | None, n_variants: int, n_matches: int,
                 best_distance: int | None, run_id: str,
                 sidecar: dict[str, dict[str, str]]) -> QueryRecord:
    meta = io.sidecar_lookup(sidecar, uri)
    return QueryRecord(uri, sha256, status, reason, width, height, n_variants, n_matches,
                       best_distance, run_id, **{f: meta.get(f) for f in QUERY_SIDECAR_FIELDS})


def read_bytes(uri: str) -> bytes:
    with io.open_input(uri) as f:
        data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError("too_large", f"file is over {MAX_IMAGE_BYTES >> 20} MiB")
    return data


class FingerprintQuery(beam.DoFn):
    """uri → (sha256, uri): the content key that deduplicates re-posts."""

    def __init__(self, run_id: str, sidecar: dict[str, dict[str, str]]):
        self.run_id = run_id
        self.sidecar = sidecar
        self.bytes_read = Metrics.counter("match", "bytes_read")

    def process(self, uri: str) -> Iterator[Any]:
        try:
            data = read_bytes(uri)
        except ImageError as e:
            yield from failed(uri, None, e.stage, str(e), self.run_id, self.sidecar)
            return
        except Exception as e:  # noqa: BLE001 - any read failure is this input's dead letter
            yield from failed(uri, None, "read", f"read: {e!r}", self.run_id, self.sidecar)
            return
        self.bytes_read.inc(len(data))
        yield hashlib.sha256(data).hexdigest(), uri


class HashQuery(beam.DoFn):
    """Decodes one distinct image and hashes its variants with the index's key hasher."""

    def __init__(self, hasher: str, max_variants: int, max_pixels: int, run_id: str,
                 sidecar: dict[str, dict[str, str]], keep_picture: bool = False,
                 pdq: bool = False):
        self.keep_picture = keep_picture
        self.pdq = pdq
        self.hasher = hasher
        self.max_variants = max_variants
        self.max_pixels = max_pixels
        self.run_id = run_id
        self.sidecar = sidecar
        self.distinct = Metrics.counter("match", "distinct_images")
        self.variants = Metrics.distribution("match", "variants_per_query")
        self.hash_ms = Metrics.distribution("match", "hash_ms")

    def process(self, element: tuple[str, list[str]]) -> Iterator[Any]:
        sha256, uris = element
        uris = sorted(set(uris))
        began = time.monotonic()
        try:
            image = load_image(read_bytes(uris[0]), max_pixels=self.max_pixels,
                               draft_side=DRAFT_SIDE)
        except ImageError as e:
            for uri in uris:
                yield from failed(uri, sha256, e.stage, str(e), self.run_id, self.sidecar)
            return
        except Exception as e:  # noqa: BLE001
            for uri in uris:
                yield from failed(uri, sha256, "read", f"read: {e!r}", self.run_id,
                                       self.sidecar)
            return
        self.distinct.inc()
        variants = query_variants(image, self.max_variants)
        thumbs = variant_thumbnails(image, variants)
        codes = hashing.HASHERS[self.hasher].compute(thumbs)
        usable = ~preprocess.is_flat(thumbs)
        self.variants.update(len(variants))
        self.hash_ms.update(int((time.monotonic() - began) * 1000))
        names = [v.name for v, ok in zip(variants, usable, strict=True) if ok]
        pdq_codes = pdq_names = None
        if self.pdq:  # the index holds received PDQ lists: hash the variants as partners do
            pdq_codes, quality = hashing.pdq_codes_and_quality(thumbs[usable])
            good = quality >= PDQ_MIN_QUALITY
            pdq_names = [n for n, g in zip(names, good, strict=True) if g]
            pdq_codes = pdq_codes[good]
        yield HashedQuery(sha256, uris, image.width, image.height, names, codes[usable],
                          len(variants), query_grey(image) if self.keep_picture else None,
                          pdq_codes, pdq_names)


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
        manifest = index_store.load_manifest(self.index_dir)
        self.checked_at = time.monotonic()
        if manifest and manifest.partitions and manifest.version != self.loaded_version:
            index_store.require_compatible(manifest, self.index_dir)
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
            spans = sorted(spans, key=lambda s: (-s.score, s.ts_end - s.ts_start))[: self.top_k]
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


class AnswerQueries(beam.DoFn):
    """Candidates → one ``QueryRecord`` per URI and its ranked ``MatchRecord``s."""

    def __init__(self, radius: int, run_id: str, sidecar: dict[str, dict[str, str]],
                 rejected: frozenset[tuple[str, str]] = frozenset()):
        self.rejected = rejected
        self.radius = radius
        self.run_id = run_id
        self.sidecar = sidecar
        self.matched = Metrics.counter("match", "queries_matched")
        self.unmatched = Metrics.counter("match", "queries_no_match")
        self.suppressed = Metrics.counter("match", "spans_rejected_by_analysts")

    def process(self, candidates: Candidates) -> Iterator[Any]:
        query = candidates.query
        spans = [s for s in candidates.spans  # pairs an analyst rejected stay out
                 if (query.sha256, s.video["uri"]) not in self.rejected]
        if len(spans) < len(candidates.spans):
            self.suppressed.inc(len(candidates.spans) - len(spans))
        if not len(query.codes):
            status, reason = "no_match", "flat or featureless image: no usable hash"
        elif spans:
            status, reason = "matched", None
        else:
            status, reason = "no_match", f"nothing within {self.radius} bits"
        for uri in query.uris:
            (self.matched if spans else self.unmatched).inc()
            record = query_record(uri, query.sha256, status, reason, query.width, query.height,
                                  query.n_variants, len(spans),
                                  spans[0].distance if spans else None, self.run_id,
                                  self.sidecar)
            yield beam.pvalue.TaggedOutput(QUERIES, record)
            for rank, span in enumerate(spans, start=1):
                video = span.video
                yield MatchRecord(
                    query_uri=uri, query_sha256=query.sha256, ref_uri=video["uri"],
                    ref_video_id=span.video_id, ref_ts_s=span.ts_best,
                    ref_ts_start_s=span.ts_start, ref_ts_end_s=span.ts_end,
                    distance=span.distance, hasher=span.hasher, variant=span.variant,
                    ref_region=span.region, variants=",".join(span.variants), score=span.score,
                    n_frames=span.n_frames, rank=rank, run_id=self.run_id,
                    verified=span.verified, inliers=span.inliers,
                    **{f: record._asdict()[f] for f in QUERY_SIDECAR_FIELDS},
                    ref_title=video.get("title"), ref_source_url=video.get("source_url"),
                    ref_published=video.get("published"),
                )
