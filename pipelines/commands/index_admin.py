"""Index lifecycle: takedown, compaction and rollback, each one manifest write.

    framematch takedown --index DIR --uri URI [--reason TEXT]
    framematch compact-index --index DIR
    framematch rollback --index DIR --to BATCH_ID

The manifest's partition list is the index's history: version *k* is its first *k*
batches. So a **takedown** appends a batch (``transforms.partitions``, as an import does)
holding one tombstone, whose warning starts with ``takedown`` so that later index runs keep
the still-listed file out; a **rollback** writes a manifest listing the batches up to
``--to``, after saving the one it replaces as ``manifest-<its last batch>.json``, so a
rollback can itself be undone by rolling "back" to that batch; **compaction** writes the
live rows (and takedown tombstones, and the live batches' dead letters) as one new batch,
makes the manifest list only it, and only then deletes the old batches' files: a crash at
any point leaves a readable index. History before a compaction is gone with its files.

Run these when no index job is writing to the same index: each reads the manifest, writes,
and replaces it, and a concurrent writer's batch would be dropped from the new manifest.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from pipelines.options import new_run_id
from schemas.manifest import Manifest, partition_dir
from schemas.records import (
    DEAD_LETTER,
    DEAD_LETTER_SCHEMA,
    FRAMES,
    FRAMES_SCHEMA,
    INDEX_RECORDS,
    INDEX_TABLES,
    REFERENCES,
    REFERENCES_SCHEMA,
    VIDEOS,
    VideoRecord,
)
from transforms.index import batches
from transforms.index.changes import TAKEDOWN
from transforms.index.store import (
    latest_videos,
    live_rows,
    load_manifest,
    manifest_uri,
    require_compatible,
)
from transforms.io import parquet, storage


def _open(index_dir: str) -> Manifest:
    manifest = load_manifest(index_dir)
    if manifest is None:
        raise SystemExit(f"framematch: no index at {index_dir} (no manifest.json)")
    require_compatible(manifest, index_dir)
    return manifest


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"framematch {prog}")
    parser.add_argument("--index", required=True, help="Index directory (local or gs://).")
    return parser


def tombstone(index_dir: str, uri: str, reason: str | None = None) -> str:
    """Take the live video at ``uri`` out of the index; returns the new batch id."""
    manifest = _open(index_dir)
    latest = latest_videos(index_dir, manifest)
    rows = latest.filter(pc.equal(latest.column("uri"), uri)).to_pylist()
    if not rows or rows[0]["deleted"]:
        raise SystemExit(f"framematch takedown: {uri} is not a live video of {index_dir}")
    started = datetime.datetime.now(datetime.UTC)
    batch_id = new_run_id(started)
    note = f"{TAKEDOWN}: {reason}" if reason else TAKEDOWN
    record = VideoRecord(**{**{f: rows[0][f] for f in VideoRecord._fields},
                            "batch_id": batch_id, "deleted": True, "warning": note})
    batches.write_table(index_dir, VIDEOS, batch_id, [record], INDEX_TABLES[VIDEOS])
    batches.commit_batch(index_dir, manifest, batch_id, started)
    return batch_id


def compact_index(index_dir: str) -> str:
    """Merge the live partitions into one new batch; returns its id."""
    manifest = _open(index_dir)
    old = [p.batch_id for p in manifest.partitions]
    started = datetime.datetime.now(datetime.UTC)
    batch_id = new_run_id(started)
    latest = latest_videos(index_dir, manifest)
    kept = pc.or_(pc.invert(latest.column("deleted")),
                  pc.starts_with(pc.fill_null(latest.column("warning"), ""), TAKEDOWN))
    videos = latest.filter(kept)
    batches.write_frames(index_dir, batch_id,
                         live_rows(index_dir, manifest, videos, FRAMES, FRAMES_SCHEMA),
                         live_rows(index_dir, manifest, videos, REFERENCES, REFERENCES_SCHEMA),
                         manifest.shard_rows)
    tables = {
        DEAD_LETTER: pa.concat_tables([
            parquet.read_table(partition_dir(index_dir, DEAD_LETTER, b), DEAD_LETTER_SCHEMA)
            for b in old] or [DEAD_LETTER_SCHEMA.empty_table()]),
        VIDEOS: videos.set_column(videos.schema.get_field_index("batch_id"), "batch_id",
                                  pa.array([batch_id] * videos.num_rows, pa.string())),
    }
    for name, table in tables.items():
        records = [INDEX_RECORDS[name](**row) for row in table.to_pylist()]
        batches.write_table(index_dir, name, batch_id, records, INDEX_TABLES[name])
    manifest.partitions = []
    batches.commit_batch(index_dir, manifest, batch_id, started)
    stale = [path for b in old for name in INDEX_TABLES
             for path in parquet.parquet_files(partition_dir(index_dir, name, b))]
    if stale:
        FileSystems.delete(stale)
    return batch_id


def roll_back(index_dir: str, to_batch: str) -> Manifest:
    """Make the index the version whose last batch is ``to_batch``; returns that manifest.

    The replaced manifest is kept as ``manifest-<its last batch>.json`` first.
    """
    manifest = _open(index_dir)
    ids = [p.batch_id for p in manifest.partitions]
    if to_batch in ids:
        target = Manifest(**{**vars(manifest),
                             "partitions": manifest.partitions[: ids.index(to_batch) + 1]})
    elif storage.exists(saved := _history_uri(index_dir, to_batch)):
        target = Manifest.from_json(storage.read_text(saved))
    else:
        raise SystemExit(f"framematch rollback: {to_batch} is neither a batch of {index_dir} "
                         f"nor a saved manifest ({saved})")
    if ids:
        storage.write_text_atomic(_history_uri(index_dir, ids[-1]), manifest.to_json())
    storage.write_text_atomic(manifest_uri(index_dir), target.to_json())
    return target


def _history_uri(index_dir: str, batch_id: str) -> str:
    return f"{index_dir.rstrip('/')}/manifest-{batch_id}.json"


def takedown(argv: Sequence[str]) -> int:
    parser = _parser("takedown")
    parser.add_argument("--uri", required=True, help="The video's URI, as indexed.")
    parser.add_argument("--reason", default=None, help="Recorded in the tombstone's warning.")
    args = parser.parse_args(argv)
    batch_id = tombstone(args.index, args.uri, args.reason)
    print(f"takedown {args.uri}: tombstoned in batch {batch_id}")
    return 0


def compact(argv: Sequence[str]) -> int:
    args = _parser("compact-index").parse_args(argv)
    before = len(_open(args.index).partitions)
    batch_id = compact_index(args.index)
    print(f"compact-index {args.index}: {before} partitions merged into batch {batch_id}")
    return 0


def rollback(argv: Sequence[str]) -> int:
    parser = _parser("rollback")
    parser.add_argument("--to", required=True, help="The batch id that becomes the last live.")
    args = parser.parse_args(argv)
    manifest = roll_back(args.index, args.to)
    print(f"rollback {args.index}: {len(manifest.partitions)} partitions live, last {args.to}")
    return 0
