"""The index manifest: which partitions are live, how their hashes were made, their shards.

Committed last by every index run (one new version of the manifest log, created
exclusively: ``transforms.index.manifest_log``), so a reader that goes through the manifest
never sees a half-written partition. The match job refuses an index whose preprocessing
version is not its own, and widens its search radius by ``prune_d``.

Each batch's key rows are grouped into ``shards`` of at most ``shard_rows`` rows (the
files of each shard are listed in the batch's ``shards`` table); a shard is immutable once
written, so a worker that loaded one never has to reload it. A batch that tombstones a
video (a deletion, a replacement, a takedown) lists its id in ``tombstoned``: that video's
rows in the shards of *earlier* batches are no longer live.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

MANIFEST_FORMAT = 2  # 2: sharded key rows (format 1 indexes must be rebuilt)
MANIFEST_NAME = "manifest.json"  # an index from before the log: its version 0
MANIFEST_LOG = "_manifests"  # the log of versions: <index>/_manifests/<version>.json


@dataclasses.dataclass
class Partition:
    batch_id: str
    created: str
    videos: int
    rows: int
    tombstones: int
    dead_letters: int
    shards: int = 0  # shards 0..shards-1 of this batch (the batch's ``shards`` table)
    tombstoned: list[int] = dataclasses.field(default_factory=list)  # video ids retired
    pdq_only_rows: int = 0  # rows of received hash lists: found by PDQ, not by the key


@dataclasses.dataclass
class Manifest:
    preprocess_version: int
    key_hasher: str
    hashers: list[str]  # stored beside the key on whole-frame rows
    prune_d: int
    regions: list[str]
    shard_rows: int  # at most this many key rows per shard
    partitions: list[Partition] = dataclasses.field(default_factory=list)
    format: int = MANIFEST_FORMAT
    log_version: int = 0  # its number in the manifest log (0: none yet, or a legacy file)
    committed: str = ""  # when that version was committed (ISO 8601, UTC)
    operation: str = ""  # what committed it: index, import, takedown, compact, rollback

    @property
    def version(self) -> str:
        """The newest live batch: what a loaded copy of the index is keyed and refreshed by."""
        return self.partitions[-1].batch_id if self.partitions else "empty"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unsupported manifest format {data.get('format')!r} (this "
                             f"framematch reads format {MANIFEST_FORMAT}): rebuild the index "
                             f"with framematch index --index NEW_DIR")
        data["partitions"] = [Partition(**p) for p in data.get("partitions", [])]
        return cls(**data)


def retired_after(manifest: Manifest) -> dict[str, frozenset[int]]:
    """Per batch, the video ids tombstoned by later batches: its rows of those are not live."""
    retired: dict[str, frozenset[int]] = {}
    later: set[int] = set()
    for partition in reversed(manifest.partitions):
        retired[partition.batch_id] = frozenset(later)
        later |= set(partition.tombstoned)
    return retired


def partition_dir(index_dir: str, table: str, batch_id: str) -> str:
    return f"{index_dir.rstrip('/')}/{table}/batch={batch_id}"
