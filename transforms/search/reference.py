"""The reference index a worker holds: live frame rows as arrays, searchable by Hamming.

``ReferenceIndex`` is what each worker process holds (once, through ``Shared``): the live
frame rows of an index as numpy arrays plus a multi-index hash over the rows that may be
search keys, and the rows of received PDQ lists (``PdqRows``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.manifest import Manifest
from transforms.hashing.hashes import codes_of
from transforms.index import store
from transforms.search.mih import HammingIndex, nearest_rows
from transforms.search.pdq_rows import PdqRows

MIN_QUALITY = 50  # PDQ quality below which a frame or a query variant is no search key


@dataclasses.dataclass
class ReferenceIndex:
    """Live frame rows of an index, searchable by exact Hamming range queries."""

    hasher: str
    prune_d: int
    video_id: np.ndarray  # (N,) int64
    ts_start: np.ndarray  # (N,) float64
    ts_end: np.ndarray  # (N,) float64
    region: np.ndarray  # (N,) int8, codes of transforms.hashing.regions.REGIONS
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
        videos = store.live_videos(index_dir, manifest)
        frames = store.live_frames(index_dir, manifest, videos)
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
        variant, key, dist = nearest_rows(self.key_codes, codes, k, max_distance)
        return variant, self.key_rows[key], dist
