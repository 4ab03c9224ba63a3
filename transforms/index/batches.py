"""Writing an ingest batch and committing it: the one tail of every index write.

``framematch index`` writes its partitions from Beam; ``import``, ``takedown`` and
``compact-index`` write theirs in one process. All of them open the manifest here (created
with the index's settings, or checked against them), and make their batch live here, last:
its key rows packed into shards of at most ``shard_rows`` rows (``pack_shards``, written to
the batch's ``shards`` table), its tables counted and its ``Partition`` appended to the
manifest as a new version of the manifest log (``transforms.index.manifest_log``): a
compare-and-swap that, when another writer committed first, re-applies the batch to what
that writer made (``appended``) or refuses (``CommitConflict``) when both batches touched
the same file. A crash or a refusal before the commit leaves the batch's files unreferenced
(``discard_batch`` removes them) and the index as it was.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from schemas.manifest import Manifest, Partition, partition_dir
from schemas.records import (
    DEAD_LETTER,
    FRAMES,
    INDEX_TABLES,
    REFERENCES,
    SEGMENTS,
    SEGMENTS_SCHEMA,
    SHARDS,
    SHARDS_SCHEMA,
    VIDEOS,
    VIDEOS_SCHEMA,
    ShardRecord,
)
from transforms.hashing.regions import REGION_NAMES
from transforms.index import manifest_log
from transforms.index.manifest_log import CommitConflict
from transforms.index.store import load_manifest, require_compatible
from transforms.io import parquet
from transforms.media.preprocess import PREPROCESS_VERSION


class SettingsMismatch(ValueError):
    """The index was built with other settings; adding to it would mix incomparable rows."""


DEFAULT_SHARD_ROWS = 4_000_000  # ~0.5 GB of search structure (~130 B per key row)
REFERENCE_ROW_GROUP = 16  # pictures per Parquet row group: a few candidates read ~200 kB


def index_settings(key_hasher: str, hashers: Sequence[str], prune_d: int,
                   shard_rows: int = DEFAULT_SHARD_ROWS) -> dict[str, Any]:
    """The manifest fields that every batch of one index must share."""
    return dict(preprocess_version=PREPROCESS_VERSION, key_hasher=key_hasher,
                hashers=list(hashers), prune_d=prune_d, regions=list(REGION_NAMES),
                shard_rows=shard_rows)


def segment_file(video_id: int, index: int) -> str:
    """The file name of one decoded segment's rows (``frames``) and pictures
    (``references``): fixed by the video and segment, so a retry rewrites, never adds."""
    return f"v{video_id:016x}-s{index:05d}.parquet"


def pack_shards(files: Sequence[tuple[str, int]], shard_rows: int) -> list[ShardRecord]:
    """``(file name, rows)`` packed, in order, into shards of at most ``shard_rows`` rows.

    Next fit in file-name order keeps a video's segments together; a file larger than
    ``shard_rows`` (only a hand-made batch can have one) is a shard of its own.
    """
    shards: list[ShardRecord] = []
    for name, rows in files:
        if rows == 0:
            continue
        if shards and shards[-1].n_rows + rows <= shard_rows:
            last = shards[-1]
            shards[-1] = last._replace(n_rows=last.n_rows + rows, files=[*last.files, name])
        else:
            shards.append(ShardRecord(len(shards), rows, [name]))
    return shards


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
    if must_match:  # how rows are grouped, not how they were made: each batch may have its own
        manifest.shard_rows = settings.get("shard_rows", manifest.shard_rows)
    for key, value in settings.items():
        if must_match and key != "shard_rows" and getattr(manifest, key) != value:
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


def write_frames(index_dir: str, batch_id: str, frames: pa.Table, references: pa.Table,
                 shard_rows: int) -> None:
    """A batch's rows and pictures written by one process (compaction, import): frames in
    files of at most ``shard_rows`` rows, sorted by video and time, each frames file's
    pictures in the ``references`` file of the same name (where verification looks)."""
    frames = frames.sort_by([("video_id", "ascending"), ("ts_start", "ascending"),
                             ("region", "ascending")])
    for i, start in enumerate(range(0, frames.num_rows, shard_rows)):
        name = f"part-{i:05d}.parquet"
        chunk = frames.slice(start, shard_rows)
        parquet.write_arrow(f"{partition_dir(index_dir, FRAMES, batch_id)}/{name}", chunk)
        shown = chunk.select(["video_id", "ts_start"]).group_by(["video_id", "ts_start"]
                                                                ).aggregate([])
        pictures = references.join(shown, ["video_id", "ts_start"], join_type="inner")
        if pictures.num_rows:
            parquet.write_arrow(f"{partition_dir(index_dir, REFERENCES, batch_id)}/{name}",
                                pictures.sort_by([("video_id", "ascending"),
                                                  ("ts_start", "ascending")])
                                .select(references.column_names),
                                row_group_size=REFERENCE_ROW_GROUP)


def frame_files(index_dir: str, batch_id: str) -> list[tuple[str, int, int]]:
    """``(file name, rows, rows without a key)`` of a batch's frames: from its ``segments``
    table when the index job wrote one (no read per file; the index job keys every row),
    else from the files' footers."""
    segments = parquet.read_table(partition_dir(index_dir, SEGMENTS, batch_id), SEGMENTS_SCHEMA)
    if segments.num_rows:
        named = segments.filter(pc.is_valid(segments.column("frames_file")))
        return sorted((name, rows, 0) for name, rows in zip(
            named.column("frames_file").to_pylist(), named.column("n_rows").to_pylist(),
            strict=True))
    return [(path.rsplit("/", 1)[-1], *parquet.rows_and_nulls(path, "key"))
            for path in parquet.parquet_files(partition_dir(index_dir, FRAMES, batch_id))]


def batch_partition(index_dir: str, batch_id: str, shard_rows: int,
                    created: datetime.datetime) -> tuple[Partition, set[str]]:
    """A written batch made ready to commit: its shards packed (and written), its tables
    counted; returns its ``Partition`` and the URIs it touches (indexed or tombstoned)."""
    files = frame_files(index_dir, batch_id)
    shards = pack_shards([(name, rows) for name, rows, _ in files], shard_rows)
    parquet.write_records(f"{partition_dir(index_dir, SHARDS, batch_id)}/part-0.parquet",
                          shards, SHARDS_SCHEMA)
    videos = parquet.read_table(partition_dir(index_dir, VIDEOS, batch_id), VIDEOS_SCHEMA)
    deleted = videos.column("deleted").to_numpy(zero_copy_only=False)
    tombstoned = sorted(set(videos.column("video_id").to_numpy()[deleted].tolist()))
    dead_letters = parquet.count_rows(partition_dir(index_dir, DEAD_LETTER, batch_id))
    partition = Partition(batch_id=batch_id, created=created.isoformat(),
                          videos=int((~deleted).sum()), rows=sum(s.n_rows for s in shards),
                          tombstones=int(deleted.sum()), dead_letters=dead_letters,
                          shards=len(shards), tombstoned=tombstoned,
                          pdq_only_rows=sum(keyless for _, _, keyless in files))
    return partition, set(videos.column("uri").to_pylist())


def uris_of(index_dir: str, batch_ids: Sequence[str]) -> set[str]:
    """The URIs the ``videos`` rows of these batches name."""
    return {uri for b in batch_ids for uri in parquet.read_table(
        partition_dir(index_dir, VIDEOS, b), VIDEOS_SCHEMA).column("uri").to_pylist()}


def appended(index_dir: str, base: Manifest, partition: Partition, touched: set[str]
             ) -> Callable[[Manifest], Manifest]:
    """The change "append ``partition``", made against ``base`` and re-applicable to any
    later version that only added batches touching none of ``touched`` (so the batch's
    decisions, made against ``base``, still hold). Anything else is a ``CommitConflict``:
    a version whose history is not ``base``'s plus more (a compaction or a rollback ran),
    another hashing setup, or a later batch that indexed or tombstoned one of the same files
    (both would claim it)."""
    settings = ("preprocess_version", "key_hasher", "prune_d", "regions")

    def change(current: Manifest) -> Manifest:
        ours = [p.batch_id for p in base.partitions]
        theirs = [p.batch_id for p in current.partitions]
        if theirs[: len(ours)] != ours:
            raise CommitConflict(
                f"{index_dir} was compacted or rolled back (manifest version "
                f"{current.log_version}) while batch {partition.batch_id} was written")
        if any(getattr(current, k) != getattr(base, k) for k in settings):
            raise SettingsMismatch(f"{index_dir} was created meanwhile with other settings")
        meanwhile = theirs[len(ours):]
        both = sorted(touched & uris_of(index_dir, meanwhile))
        if both:
            raise CommitConflict(
                f"{len(both)} file(s) of batch {partition.batch_id} were also changed by "
                f"batch(es) {', '.join(meanwhile)} committed meanwhile, e.g. {both[0]}")
        return dataclasses.replace(current, shard_rows=base.shard_rows,
                                   partitions=[*current.partitions, partition])

    return change


def commit_batch(index_dir: str, manifest: Manifest, batch_id: str,
                 created: datetime.datetime, operation: str = "index") -> Manifest:
    """Make a written batch live: pack its shards, count its tables, append its Partition to
    ``manifest`` (the version the batch was made against) as the next manifest version.
    Returns the committed manifest (its last partition is the batch).

    Raises ``CommitConflict`` (nothing committed) when a concurrent commit makes that unsafe.
    """
    partition, touched = batch_partition(index_dir, batch_id, manifest.shard_rows, created)
    return manifest_log.commit(index_dir, manifest,
                               appended(index_dir, manifest, partition, touched), operation)


def discard_batch(index_dir: str, batch_id: str) -> int:
    """Delete the files of a batch no manifest references (refused or abandoned)."""
    files = [path for table in INDEX_TABLES
             for path in _files_under(partition_dir(index_dir, table, batch_id))]
    if files:
        FileSystems.delete(files)
    return len(files)


def _files_under(directory: str) -> list[str]:
    try:
        return [m.path for m in FileSystems.match([f"{directory}/**"])[0].metadata_list]
    except Exception:  # noqa: BLE001 - Beam raises for a pattern under a missing directory
        return []


def _batch_time(batch_id: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(batch_id[:16], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:
        return None


def vacuum(index_dir: str, retain: datetime.timedelta,
           now: datetime.datetime | None = None) -> tuple[list[str], list[str]]:
    """Delete the batches no retained manifest version references, and the log versions
    older than ``retain``; returns (batch ids deleted, versions deleted).

    Retained: the live version, every version committed within ``retain`` (what a stream
    or a long match job may still be reading, what ``rollback`` may still return to) and
    legacy saved manifests. A batch is deleted only once it is itself older than ``retain``
    (by its id's time), so the files of an index run still writing its batch are safe.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    referenced = {p.batch_id for m in manifest_log.retained(index_dir, retain, now)
                  for p in m.partitions}
    on_disk = set()
    for table in INDEX_TABLES:
        for path in _files_under(f"{index_dir.rstrip('/')}/{table}"):
            part = next((p for p in path.split("/") if p.startswith("batch=")), None)
            if part:
                on_disk.add(part.removeprefix("batch="))
    stale = sorted(b for b in on_disk - referenced
                   if (t := _batch_time(b)) is not None and now - t > retain)
    for batch_id in stale:
        discard_batch(index_dir, batch_id)
    expired = manifest_log.expired_versions(index_dir, retain, now)
    if expired:
        FileSystems.delete(expired)
    return stale, expired
