"""What travels between the match job's stages: a hashed query, and its candidates.

Defined here, below both the search and the verification stage, so each can take and give
them without importing the other.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from transforms.search.spans import Span


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
    # variant name -> its relative (left, top, right, bottom) box on the upright image:
    # where the archive frame is believed to be in the post (for the verification stage)
    variant_boxes: dict[str, tuple[float, float, float, float]] | None = None


class Candidates(NamedTuple):
    """A hashed query with the spans its hashes found and, for the verification stage,
    the nearest rows beyond the radius (when nothing was within it)."""

    query: HashedQuery
    spans: list[Span]
    rescue: list[Span]
