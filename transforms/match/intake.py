"""Intake of posted images: read, fingerprint (to deduplicate re-posts), hash in variants.

Identical re-posts (same sha256) are decoded and searched once and answered for every URI
that carried them. An input that cannot be read or decoded leaves here as a failed
``QueryRecord`` and its ``DeadLetter`` (``transforms.match.answer.failed``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.hashing import hashes
from transforms.hashing.variants import query_variants, variant_thumbnails
from transforms.match.answer import failed
from transforms.media import preprocess
from transforms.media.images import ImageError, load_post, read_bytes
from transforms.media.pictures import query_grey
from transforms.search.pdq_rows import PDQ_MIN_QUALITY
from transforms.search.query import HashedQuery

WORK_SIDE = 640  # long side of the copy of a post that variants and pictures are cut from


class FingerprintQuery(beam.DoFn):
    """uri → (sha256, uri): the content key that deduplicates re-posts."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.bytes_read = Metrics.counter("match", "bytes_read")

    def process(self, uri: str) -> Iterator[Any]:
        try:
            data = read_bytes(uri)
        except ImageError as e:
            yield from failed(uri, None, e.stage, str(e), self.run_id)
            return
        self.bytes_read.inc(len(data))
        yield hashlib.sha256(data).hexdigest(), uri


class HashQuery(beam.DoFn):
    """Decodes one distinct image and hashes its variants with the index's key hasher."""

    def __init__(self, hasher: str, max_variants: int, max_pixels: int, run_id: str,
                 keep_picture: bool = False,
                 pdq: bool = False):
        self.keep_picture = keep_picture
        self.pdq = pdq
        self.hasher = hasher
        self.max_variants = max_variants
        self.max_pixels = max_pixels
        self.run_id = run_id
        self.distinct = Metrics.counter("match", "distinct_images")
        self.variants = Metrics.distribution("match", "variants_per_query")
        self.hash_ms = Metrics.distribution("match", "hash_ms")

    def process(self, element: tuple[str, list[str]]) -> Iterator[Any]:
        sha256, uris = element
        uris = sorted(set(uris))
        began = time.monotonic()
        try:
            image, (width, height) = load_post(read_bytes(uris[0]),
                                               max_pixels=self.max_pixels, work_side=WORK_SIDE)
        except ImageError as e:
            for uri in uris:
                yield from failed(uri, sha256, e.stage, str(e), self.run_id)
            return
        self.distinct.inc()
        variants = query_variants(image, self.max_variants)
        thumbs = variant_thumbnails(image, variants)
        codes = hashes.HASHERS[self.hasher].compute(thumbs)
        usable = ~preprocess.is_flat(thumbs)
        self.variants.update(len(variants))
        self.hash_ms.update(int((time.monotonic() - began) * 1000))
        names = [v.name for v, ok in zip(variants, usable, strict=True) if ok]
        pdq_codes = pdq_names = None
        if self.pdq:  # the index holds received PDQ lists: hash the variants as partners do
            pdq_codes, quality = hashes.pdq_codes_and_quality(thumbs[usable])
            good = quality >= PDQ_MIN_QUALITY
            pdq_names = [n for n, g in zip(names, good, strict=True) if g]
            pdq_codes = pdq_codes[good]
        yield HashedQuery(sha256, uris, width, height, names, codes[usable],
                          len(variants), query_grey(image) if self.keep_picture else None,
                          pdq_codes, pdq_names, {v.name: v.box for v in variants})
