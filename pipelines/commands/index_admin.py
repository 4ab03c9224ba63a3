"""Index lifecycle: takedown, compaction and rollback, each one commit to the manifest log.

    framematch takedown --index DIR --uri URI [--reason TEXT]
    framematch compact-index --index DIR [--retain_hours 168]
    framematch rollback --index DIR --to BATCH_ID

The manifest's partition list is the index's history: version *k* is its first *k*
batches, and the manifest log (``transforms.index.manifest_log``) keeps every version. So a
**takedown** appends a batch (as an import does) holding one tombstone, whose warning starts
with ``takedown`` so that later index runs keep the still-listed file out; a **rollback**
commits, as a new version, the manifest whose last batch is ``--to`` (an earlier state of the
live one, or any retained version of the log: a rollback can itself be undone); **compaction**
writes the live rows (and takedown tombstones, and the live batches' dead letters) as one
new batch and commits a manifest listing only it, then vacuums: batches no version
committed in the last ``--retain_hours`` references are deleted (readers still running on
an older version, and rollbacks within that time, keep their files).

Each commit is a compare-and-swap on the log, safe beside other writers: a takedown or a
rollback is re-applied to what another writer committed meanwhile (a takedown is refused
if that writer changed the same file); a compaction is refused when anything was committed
while it merged, and its merged batch discarded (run it again).
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.options import CommandParser, new_run_id
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
from transforms.index import batches, manifest_log
from transforms.index.changes import TAKEDOWN
from transforms.index.manifest_log import CommitConflict
from transforms.index.store import latest_videos, live_rows, load_manifest, require_compatible
from transforms.io import parquet, storage

DEFAULT_RETAIN_HOURS = 168.0  # a week: readers and rollbacks older than that lose their files


def _open(index_dir: str) -> Manifest:
    manifest = load_manifest(index_dir)
    if manifest is None:
        raise SystemExit(f"framematch: no index at {index_dir} (no manifest.json)")
    require_compatible(manifest, index_dir)
    return manifest


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = CommandParser(prog=f"framematch {prog}")
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
    try:
        batches.commit_batch(index_dir, manifest, batch_id, started, "takedown")
    except CommitConflict as error:
        batches.discard_batch(index_dir, batch_id)
        raise SystemExit(f"framematch takedown: {error}; nothing changed, run it again") \
            from error
    return batch_id


def compact_index(index_dir: str, retain_hours: float = DEFAULT_RETAIN_HOURS) -> str:
    """Merge the live partitions into one new batch, then vacuum; returns its id."""
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
    partition, _ = batches.batch_partition(index_dir, batch_id, manifest.shard_rows, started)

    def replace_all(current: Manifest) -> Manifest:
        if current.log_version != manifest.log_version:
            raise CommitConflict(f"{index_dir} changed while compacting (manifest version "
                                 f"{current.log_version} was committed meanwhile)")
        return Manifest(**{**vars(current), "partitions": [partition]})

    try:
        manifest_log.commit(index_dir, manifest, replace_all, "compact")
    except CommitConflict as error:
        batches.discard_batch(index_dir, batch_id)
        raise SystemExit(f"framematch compact-index: {error}; nothing changed, run it "
                         f"again") from error
    batches.vacuum(index_dir, datetime.timedelta(hours=retain_hours))
    return batch_id


def roll_back(index_dir: str, to_batch: str) -> Manifest:
    """Make the index the version whose last batch is ``to_batch``; returns that manifest.

    ``to_batch`` is a batch of the live manifest (its history is cut there) or the last
    batch of a retained version of the log (or of a legacy saved ``manifest-<batch>.json``).
    """
    _open(index_dir)

    def target(current: Manifest) -> Manifest:
        ids = [p.batch_id for p in current.partitions]
        if to_batch in ids:
            return Manifest(**{**vars(current),
                               "partitions": current.partitions[: ids.index(to_batch) + 1]})
        for version in reversed(manifest_log.versions(index_dir)):
            earlier = manifest_log.read_version(index_dir, version)
            if earlier.partitions and earlier.partitions[-1].batch_id == to_batch:
                return earlier
        saved = f"{index_dir.rstrip('/')}/manifest-{to_batch}.json"
        if storage.exists(saved):
            return Manifest.from_json(storage.read_text(saved))
        raise SystemExit(f"framematch rollback: {to_batch} is neither a batch of {index_dir} "
                         f"nor the last batch of a retained manifest version")

    return manifest_log.commit(index_dir, _open(index_dir), target, "rollback")


def takedown(argv: Sequence[str]) -> int:
    parser = _parser("takedown")
    parser.add_argument("--uri", required=True, help="The video's URI, as indexed.")
    parser.add_argument("--reason", default=None, help="Recorded in the tombstone's warning.")
    args = parser.parse_args(argv)
    batch_id = tombstone(args.index, args.uri, args.reason)
    print(f"takedown {args.uri}: tombstoned in batch {batch_id}")
    return 0


def compact(argv: Sequence[str]) -> int:
    parser = _parser("compact-index")
    parser.add_argument("--retain_hours", type=float, default=DEFAULT_RETAIN_HOURS,
                        help="Keep the files of manifest versions committed this recently "
                             "(running readers, rollbacks); 0 deletes every superseded batch "
                             "now (never while an index job writes to this index).")
    args = parser.parse_args(argv)
    before = len(_open(args.index).partitions)
    batch_id = compact_index(args.index, args.retain_hours)
    print(f"compact-index {args.index}: {before} partitions merged into batch {batch_id}")
    return 0


def rollback(argv: Sequence[str]) -> int:
    parser = _parser("rollback")
    parser.add_argument("--to", required=True, help="The batch id that becomes the last live.")
    args = parser.parse_args(argv)
    manifest = roll_back(args.index, args.to)
    print(f"rollback {args.index}: {len(manifest.partitions)} partitions live, last {args.to}")
    return 0
