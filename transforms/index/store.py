"""Reading an index through its manifest: the live partitions, never a half-written one."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from schemas.manifest import Manifest, partition_dir
from schemas.records import FRAMES_SCHEMA, VIDEOS_SCHEMA
from transforms.index import manifest_log
from transforms.io import parquet
from transforms.media.preprocess import PREPROCESS_VERSION


class IndexVersionError(ValueError):
    """The index was built with another preprocessing path: its hashes are not comparable."""


def load_manifest(index_dir: str) -> Manifest | None:
    """The live manifest (the newest version of the manifest log), or None: no index."""
    return manifest_log.head(index_dir)


def require_compatible(manifest: Manifest, index_dir: str) -> None:
    if manifest.preprocess_version != PREPROCESS_VERSION:
        raise IndexVersionError(
            f"index {index_dir} was built with preprocessing version "
            f"{manifest.preprocess_version}, this framematch uses {PREPROCESS_VERSION}: "
            f"rebuild the index (framematch index --index NEW_DIR ...)")


def live_videos(index_dir: str, manifest: Manifest) -> pa.Table:
    """The newest row per URI across live partitions, tombstones (deleted) removed."""
    videos = latest_videos(index_dir, manifest)
    return videos.filter(pc.invert(videos.column("deleted")))


def latest_videos(index_dir: str, manifest: Manifest) -> pa.Table:
    """The newest row per URI across live partitions, tombstones included."""
    tables = [parquet.read_table(partition_dir(index_dir, "videos", p.batch_id), VIDEOS_SCHEMA)
              for p in manifest.partitions]
    return newest_per_uri(pa.concat_tables(tables) if tables else VIDEOS_SCHEMA.empty_table())


def newest_per_uri(videos: pa.Table) -> pa.Table:
    """The newest ``videos`` row of each URI, sorted by URI: ``changes.latest_row``'s rule
    (newest batch; in one batch a replaced file's new row beats its tombstone) in Arrow.

    Two implementations of one rule, because change detection sees one URI's rows inside
    a Beam step and readers see whole tables; ``tests/test_index_store.py`` proves that
    they agree."""
    if videos.num_rows == 0:
        return videos
    videos = videos.sort_by([("uri", "ascending"), ("batch_id", "descending"),
                             ("deleted", "ascending")])
    uris = videos.column("uri").to_pylist()
    newest = [i for i, u in enumerate(uris) if i == 0 or uris[i - 1] != u]
    return videos.take(newest)


def live_frames(index_dir: str, manifest: Manifest, videos: pa.Table) -> pa.Table:
    """Frame rows of the live videos, each read from the partition its live row came from."""
    return live_rows(index_dir, manifest, videos, "frames", FRAMES_SCHEMA)


def live_rows(index_dir: str, manifest: Manifest, videos: pa.Table, table: str,
              schema: pa.Schema) -> pa.Table:
    """Rows of a per-video table (frames, references) of ``videos``, each read from the
    partition the video's row came from.

    A file re-indexed in place keeps its video id when its bytes did not change, so rows
    are selected by (partition, video id): older partitions' copies are never read twice.
    """
    tables = []
    for p in manifest.partitions:
        ids = videos.filter(pc.equal(videos.column("batch_id"), p.batch_id)).column("video_id")
        if len(ids) == 0:
            continue
        rows = parquet.read_table(partition_dir(index_dir, table, p.batch_id), schema)
        tables.append(rows.filter(pc.is_in(rows.column("video_id"), value_set=ids)))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def has_imported_lists(manifest: Manifest) -> bool:
    """Whether live batches hold received hash lists (searched by PDQ, not by the key)."""
    return any(p.pdq_only_rows for p in manifest.partitions)
