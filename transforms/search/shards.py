"""The sharded reference index: what a match worker loads, one shard at a time.

An index's key rows are stored in shards of at most ``shard_rows`` rows (the batch's
``shards`` table lists each shard's files; ``transforms.index.batches`` packs them). A
shard is immutable, so a loaded ``Shard`` stays valid as long as the set of its videos that
later batches retired (``ShardRef.retired``) does not change; that set is part of the
shard's cache key. Every query is searched in every live shard; a worker process keeps the
shards it loaded in one ``ShardCache``, bounded in memory, least recently used out first,
so a worker's memory does not grow with the archive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.manifest import Manifest, partition_dir, retired_after
from schemas.records import (
    FRAMES,
    FRAMES_SCHEMA,
    REFERENCES,
    SHARDS,
    SHARDS_SCHEMA,
    VIDEOS,
    VIDEOS_SCHEMA,
)
from transforms.hashing.hashes import codes_of
from transforms.io import parquet
from transforms.search.mih import HammingIndex, nearest_rows
from transforms.search.pdq_rows import PDQ_RADIUS, PdqRows
from transforms.search.spans import Hits

READ_THREADS = 8  # a shard's files are read in parallel (object stores: latency-bound)


@dataclasses.dataclass(frozen=True)
class ShardRef:
    """Where a shard is, and which of its videos are no longer live."""

    index_dir: str
    batch_id: str
    shard: int
    rows: int
    retired: frozenset[int] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.batch_id}/{self.shard:05d}"

    @property
    def key(self) -> str:
        """The shard as its live rows: a cache key that changes when ``retired`` does."""
        digest = hashlib.sha1(np.sort(np.fromiter(self.retired, np.int64)).tobytes())
        return f"{self.index_dir.rstrip('/')}|{self.name}|{digest.hexdigest()[:12]}"


def live_shards(index_dir: str, manifest: Manifest) -> list[ShardRef]:
    """Every shard of the live batches, with what later batches retired from each."""
    retired = retired_after(manifest)
    return [ShardRef(index_dir, p.batch_id, k, 0, retired[p.batch_id])
            for p in manifest.partitions for k in range(p.shards)]


@dataclasses.dataclass
class Shard:
    """One shard's live rows as arrays, searchable by exact Hamming range queries."""

    hasher: str
    video_id: np.ndarray  # (N,) int64
    ts_start: np.ndarray  # (N,) float64
    ts_end: np.ndarray  # (N,) float64
    region: np.ndarray  # (N,) int8
    file: np.ndarray  # (N,) int32, positions in ``files``
    files: list[str]  # the references file holding each frames file's pictures
    key_rows: np.ndarray  # (K,) positions of the rows the MIH indexes
    key_codes: np.ndarray  # (K, bytes)
    mih: HammingIndex
    pdq: PdqRows | None  # rows that have only a PDQ (received hash lists), or None
    videos: dict[int, dict]

    @classmethod
    def load(cls, ref: ShardRef, hasher: str) -> Shard:
        """Read a shard's files (in parallel) and drop the rows of retired videos."""
        listing = parquet.read_table(partition_dir(ref.index_dir, SHARDS, ref.batch_id),
                                     SHARDS_SCHEMA)
        (files,) = listing.filter(pc.equal(listing.column("shard"), ref.shard)
                                  ).column("files").to_pylist()
        frames_dir = partition_dir(ref.index_dir, FRAMES, ref.batch_id)
        with ThreadPoolExecutor(READ_THREADS) as pool:
            tables = list(pool.map(
                lambda name: parquet.read_files([f"{frames_dir}/{name}"],
                                                schema=FRAMES_SCHEMA), files))
        file = np.repeat(np.arange(len(files), dtype=np.int32), [t.num_rows for t in tables])
        frames = pa.concat_tables(tables)
        if ref.retired:
            live = ~np.isin(frames.column("video_id").to_numpy(), list(ref.retired))
            frames, file = frames.filter(pa.array(live)), file[live]
        videos = parquet.read_table(partition_dir(ref.index_dir, VIDEOS, ref.batch_id),
                                    VIDEOS_SCHEMA)
        ids = pa.array(np.unique(frames.column("video_id").to_numpy()))
        videos = videos.filter(pc.and_(pc.is_in(videos.column("video_id"), value_set=ids),
                                       pc.invert(videos.column("deleted"))))
        references_dir = partition_dir(ref.index_dir, REFERENCES, ref.batch_id)
        return cls.from_frames(frames, file, [f"{references_dir}/{n}" for n in files],
                               videos.to_pylist(), hasher)

    @classmethod
    def from_frames(cls, frames: pa.Table, file: np.ndarray, files: list[str],
                    videos: Iterable[dict], hasher: str) -> Shard:
        # every keyed row that is not flat is a search key: a row stands for the frames
        # pruned into it, so leaving one out (say, for a low PDQ quality) would lose them
        keyed = pc.is_valid(frames.column("key")).to_numpy(zero_copy_only=False)
        codes = codes_of(frames.column("key").fill_null(bytes(32)))
        flat = frames.column("flat").to_numpy(zero_copy_only=False)
        key_rows = np.flatnonzero(keyed & ~flat)
        pdq = PdqRows(frames, keyless_only=True) if not keyed.all() else None
        return cls(
            hasher=hasher,
            video_id=frames.column("video_id").to_numpy(),
            ts_start=frames.column("ts_start").to_numpy(),
            ts_end=frames.column("ts_end").to_numpy(),
            region=frames.column("region").to_numpy(),
            file=file, files=files, key_rows=key_rows, key_codes=codes[key_rows],
            mih=HammingIndex(codes[key_rows]),
            pdq=pdq if pdq is not None and len(pdq.rows) else None,
            videos={row["video_id"]: row for row in videos},
        )

    @property
    def nbytes(self) -> int:
        """Bytes held: the search structure and the per-row arrays (videos rows aside)."""
        arrays = (self.video_id, self.ts_start, self.ts_end, self.region, self.file,
                  self.key_rows, self.key_codes)
        pdq = self.pdq.index.nbytes + self.pdq.rows.nbytes if self.pdq else 0
        return self.mih.nbytes + sum(a.nbytes for a in arrays) + pdq

    def _hits(self, hasher: str, variant: np.ndarray, rows: np.ndarray,
              distance: np.ndarray) -> Hits:
        ids = self.video_id[rows]
        return Hits(hasher, variant.astype(np.int16), ids, self.ts_start[rows],
                    self.ts_end[rows], self.region[rows], distance.astype(np.int32),
                    self.file[rows], self.files,
                    {int(v): self.videos[int(v)] for v in np.unique(ids)})

    def search(self, codes: np.ndarray, radius: int) -> Hits:
        """Every key row within ``radius`` of one of a query's variant ``codes``."""
        if not len(codes) or not len(self.key_rows):
            return Hits.empty(self.hasher)
        variant, key, distance = self.mih.search(codes, radius)
        return self._hits(self.hasher, variant, self.key_rows[key], distance)

    def search_pdq(self, codes: np.ndarray | None) -> Hits:
        """Rows of received PDQ lists within Meta's PDQ radius of the variants' PDQ codes."""
        if self.pdq is None or codes is None or not len(codes):
            return Hits.empty("pdq")
        variant, rows, distance = self.pdq.search(codes, PDQ_RADIUS)
        return self._hits("pdq", variant, rows, distance)

    def nearest(self, codes: np.ndarray, k: int, max_distance: int) -> Hits:
        """The ``k`` key rows nearest to any variant (within ``max_distance``), by a scan.

        The coarse candidates of the verification stage for queries the hashes could not
        place (rotations, heavy crops); memory is bounded by the scan's blocks, not the shard.
        """
        if not len(codes) or not len(self.key_rows):
            return Hits.empty(self.hasher)
        variant, key, distance = nearest_rows(self.key_codes, codes, k, max_distance)
        return self._hits(self.hasher, variant, self.key_rows[key], distance)


class ShardCache:
    """The shards one worker process holds: loaded once, shared by its threads, bounded.

    ``get`` loads a shard on first use (a thread asking for a shard being loaded waits for
    it) and evicts the least recently used shards while the total passes ``max_bytes``;
    the shard just used is always kept, even alone over the bound.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shards: OrderedDict[str, Shard] = OrderedDict()
        self._pending: dict[str, threading.Event] = {}
        self.loads = 0
        self.load_seconds = 0.0

    def get(self, ref: ShardRef, max_bytes: int, load: Callable[[ShardRef], Shard]) -> Shard:
        key = ref.key
        while True:
            with self._lock:
                if key in self._shards:
                    self._shards.move_to_end(key)
                    return self._shards[key]
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = threading.Event()
                    break
            pending.wait()
        try:
            began = time.monotonic()
            shard = load(ref)
            with self._lock:
                self.loads += 1
                self.load_seconds += time.monotonic() - began
                self._shards[key] = shard
                while len(self._shards) > 1 and self.nbytes > max_bytes:
                    self._shards.popitem(last=False)
            return shard
        finally:
            with self._lock:
                self._pending.pop(key).set()

    def holds(self, ref: ShardRef) -> bool:
        with self._lock:
            return ref.key in self._shards

    @property
    def nbytes(self) -> int:
        return sum(shard.nbytes for shard in self._shards.values())


_PROCESS_CACHE: ShardCache | None = None
_PROCESS_CACHE_LOCK = threading.Lock()


def shard_cache() -> ShardCache:
    """This process's ``ShardCache`` (created on first use)."""
    global _PROCESS_CACHE
    with _PROCESS_CACHE_LOCK:
        if _PROCESS_CACHE is None:
            _PROCESS_CACHE = ShardCache()
        return _PROCESS_CACHE
