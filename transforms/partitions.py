"""Adding an ingest batch to an index outside a Beam pipeline, with the index job's rules.

``framematch index`` writes its partitions from Beam and then, last and atomically, the
manifest that makes them live. Commands that build a batch in one process (``framematch
import`` of a received hash list) must produce exactly the same layout and manifest
entries, so a reader cannot tell the two apart: this module is that shared tail --
the manifest opened (or created) with the settings checked, a table written as one
Parquet file of a partition, and the batch committed by appending its ``Partition``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.manifest import TABLES, Manifest, Partition, partition_dir
from schemas.records import VIDEOS_SCHEMA
from transforms import io, sinks
from transforms.index_store import load_manifest, manifest_uri, require_compatible
from transforms.preprocess import PREPROCESS_VERSION, REGIONS


class SettingsMismatch(ValueError):
    """The index was built with other settings; adding to it would mix incomparable rows."""


def index_settings(key_hasher: str, hashers: Sequence[str], prune_d: int) -> dict[str, Any]:
    """The manifest fields that every batch of one index must share."""
    return dict(preprocess_version=PREPROCESS_VERSION, key_hasher=key_hasher,
                hashers=list(hashers), prune_d=prune_d,
                regions=[name for name, _ in REGIONS.values()])


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


def write_records(directory: str, records: Sequence[NamedTuple], schema: pa.Schema) -> None:
    """``records`` as the one Parquet file of a partition directory (an empty file if none).

    Named like the Beam sink's shards, so ``sinks.parquet_files`` and every reader find it.
    """
    table = pa.Table.from_pylist([r._asdict() for r in records], schema=schema)
    path = f"{directory.rstrip('/')}/part-00000-of-00001.parquet"
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        pq.write_table(table, f)


def commit_batch(index_dir: str, manifest: Manifest, batch_id: str,
                 created: datetime.datetime) -> Partition:
    """Make a written batch live: count its tables, append its Partition, write the manifest.

    The manifest is written atomically and last, so a crash before this leaves the batch's
    files unreferenced and the index as it was.
    """
    counts = {name: sinks.count_rows(partition_dir(index_dir, name, batch_id))
              for name in TABLES}
    tombstones = sinks.read_table(partition_dir(index_dir, "videos", batch_id),
                                  VIDEOS_SCHEMA).column("deleted").to_pylist().count(True)
    partition = Partition(batch_id=batch_id, created=created.isoformat(),
                          videos=counts["videos"] - tombstones, rows=counts["frames"],
                          tombstones=tombstones, dead_letters=counts["dead_letter"])
    manifest.partitions.append(partition)
    io.write_text_atomic(manifest_uri(index_dir), manifest.to_json())
    return partition
