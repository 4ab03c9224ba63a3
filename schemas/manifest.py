"""The index manifest: which partitions are live and how their hashes were made.

Written last by every index run (atomically), so a reader that goes through the manifest
never sees a half-written partition. The match job refuses an index whose preprocessing
version is not its own, and widens its search radius by ``prune_d``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass
class Partition:
    batch_id: str
    created: str
    videos: int
    rows: int
    tombstones: int
    dead_letters: int


@dataclasses.dataclass
class Manifest:
    preprocess_version: int
    key_hasher: str
    hashers: list[str]  # stored beside the key on whole-frame rows
    prune_d: int
    regions: list[str]
    partitions: list[Partition] = dataclasses.field(default_factory=list)
    format: int = MANIFEST_FORMAT

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
            raise ValueError(f"unsupported manifest format {data.get('format')!r}")
        data["partitions"] = [Partition(**p) for p in data.get("partitions", [])]
        return cls(**data)


def partition_dir(index_dir: str, table: str, batch_id: str) -> str:
    return f"{index_dir.rstrip('/')}/{table}/batch={batch_id}"
