"""Writing an ingest batch and committing it: the one tail of every index write.

``framematch index`` writes its partitions from Beam; ``import``, ``takedown`` and
``compact-index`` write theirs in one process. All of them open the manifest here (created
with the index's settings, or checked against them), and make their batch live here, last:
its tables counted and its ``Partition`` appended to the manifest, which is written
atomically. A crash before the commit leaves the batch's files unreferenced and the index
as it was.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from schemas.manifest import Manifest, Partition, partition_dir
from schemas.records import DEAD_LETTER, FRAMES, VIDEOS, VIDEOS_SCHEMA
from transforms.hashing.regions import REGION_NAMES
from transforms.index.store import load_manifest, manifest_uri, require_compatible
from transforms.io import parquet, storage
from transforms.media.preprocess import PREPROCESS_VERSION


class SettingsMismatch(ValueError):
    """The index was built with other settings; adding to it would mix incomparable rows."""


def index_settings(key_hasher: str, hashers: Sequence[str], prune_d: int) -> dict[str, Any]:
    """The manifest fields that every batch of one index must share."""
    return dict(preprocess_version=PREPROCESS_VERSION, key_hasher=key_hasher,
                hashers=list(hashers), prune_d=prune_d, regions=list(REGION_NAMES))


def open_manifest(index_dir: str, settings: dict[str, Any], *,
                  must_match: bool = True) -> Manifest:
    """The index's manifest, or a new one with ``settings`` when the index is empty.

    Raises ``IndexVersionError`` when the existing index was built with another
    preprocessing version, and ``SettingsMismatch`` when ``must_match`` and another setting
    differs (rows made with another key hasher or prune_d are not comparable; rows that
    carry only a received PDQ do not depend on them, so an import passes False).
    """
    manifest = load_manifest(index_dir)
    if manifest is None:
        return Manifest(**settings)
    require_compatible(manifest, index_dir)
    for key, value in settings.items():
        if must_match and getattr(manifest, key) != value:
            raise SettingsMismatch(f"{index_dir} was built with {key}="
                                   f"{getattr(manifest, key)!r}, not {value!r}; use a new "
                                   f"index directory to change it")
    return manifest


def write_table(index_dir: str, table: str, batch_id: str, records: Sequence[NamedTuple],
                schema: pa.Schema) -> None:
    """``records`` as the one Parquet file of a batch's partition (an empty file if none).

    Named like the Beam sink's shards, so ``parquet.parquet_files`` and every reader find it.
    """
    directory = partition_dir(index_dir, table, batch_id)
    parquet.write_records(f"{directory}/part-00000-of-00001.parquet", records, schema)


def commit_batch(index_dir: str, manifest: Manifest, batch_id: str,
                 created: datetime.datetime) -> Partition:
    """Make a written batch live: count its tables, append its Partition, write the manifest."""
    counts = {name: parquet.count_rows(partition_dir(index_dir, name, batch_id))
              for name in (VIDEOS, FRAMES, DEAD_LETTER)}
    tombstones = parquet.read_table(partition_dir(index_dir, VIDEOS, batch_id),
                                    VIDEOS_SCHEMA).column("deleted").to_pylist().count(True)
    partition = Partition(batch_id=batch_id, created=created.isoformat(),
                          videos=counts[VIDEOS] - tombstones, rows=counts[FRAMES],
                          tombstones=tombstones, dead_letters=counts[DEAD_LETTER])
    manifest.partitions.append(partition)
    storage.write_text_atomic(manifest_uri(index_dir), manifest.to_json())
    return partition
