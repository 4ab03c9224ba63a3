"""``framematch import``: a received hash list becomes an ingest batch of an index.

    framematch import --hashes SRC --index DIR [--format auto|pdq|vpdq|csv] [--label NAME]
                      [--meta videos.csv] [--match]

``SRC`` is a file, glob or directory (searched recursively) of PDQ lists
(``pdq <hex> [quality] [label]`` or bare hex), vPDQ files (one per video) or CSVs
``hash,quality,label[,ts]``. Each item -- a labelled group of lines, or one vPDQ file --
becomes a ``videos`` row and its hashes ``frames`` rows (region 0, PDQ and quality, no
search key), in a new batch made live by the manifest like one built from footage. Lines
without a label are named by ``--label``, else each by its file and line number. A vPDQ
file is named by ``--meta`` (``export``'s ``videos.csv``: its ``file`` column names the
file, ``uri`` the video; found automatically in an imported directory), else by
``--label``, else by its own URI. Lines of one name, in one file or several, are one
item. Bad lines are dead-lettered (stage ``import``,
``line N: ...``); the rest of the file is imported. ``--match`` then reports, for each
imported item, the indexed videos it matches under vPDQ's rule and where it starts in them
(a partner's vPDQ of a clip: which archive video, which moment).
"""

from __future__ import annotations

import argparse
import datetime
import os
import posixpath
import sys

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.index import KEY_HASHER, IndexOptions
from pipelines.options import CommandParser, new_run_id
from schemas.manifest import Manifest, Partition
from schemas.records import (
    DEAD_LETTER,
    FRAMES,
    INDEX_TABLES,
    REFERENCES,
    VIDEOS,
    DeadLetter,
    FrameRecord,
    VideoRecord,
)
from transforms.index import batches
from transforms.index.manifest_log import CommitConflict
from transforms.index.store import (
    IndexVersionError,
    latest_videos,
    live_frames,
    live_videos,
    load_manifest,
)
from transforms.io import storage
from transforms.results import hash_formats
from transforms.results.hash_formats import HashLine, LineError
from transforms.results.hash_lists import (
    VIDEOS_LIST,
    group_by_label,
    item_records,
    match_imported,
)

STAGE = "import"


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="framematch import", description=__doc__.split("\n")[0])
    parser.add_argument("--hashes", required=True, help="Hash list(s): file, glob, directory.")
    parser.add_argument("--index", required=True, help="Index directory (local or gs://).")
    parser.add_argument("--format", choices=("auto", *hash_formats.FORMATS), default="auto")
    parser.add_argument("--label", default=None,
                        help="Name of the item for lines (or the one vPDQ file) without one.")
    parser.add_argument("--match", action="store_true",
                        help="Then report the indexed videos each imported item matches under "
                             "vPDQ's rule (query share >= 80 %% of frames within 31 bits) and "
                             "where in the video it starts.")
    parser.add_argument("--meta", default=None,
                        help="CSV/JSONL keyed by uri (title, source_url, published, rights); "
                             "a 'file' column maps vPDQ file names to their video's uri.")
    return parser


def _files(source: str) -> list[str]:
    """A hash file, a glob or a directory (recursive). Unlike ``--archive``, a ``.txt`` file
    is not a list of URIs: PDQ and vPDQ lists are ``.txt`` files themselves."""
    pattern = source
    if source.endswith("/") or os.path.isdir(source):
        pattern = FileSystems.join(source.rstrip("/"), "**")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _read_list(uri: str, fmt: str, batch_id: str
               ) -> tuple[str, list[tuple[int, HashLine]], list[DeadLetter]]:
    """A file's format, its good lines and a dead letter per bad line (or for the file)."""
    try:
        text = storage.read_text(uri)
    except (OSError, UnicodeDecodeError) as error:
        return fmt, [], [DeadLetter(uri, "read", f"cannot read hash list: {error}", batch_id)]
    fmt = hash_formats.detect_format(text, uri) if fmt == "auto" else fmt
    good, dead = [], []
    for number, parsed in hash_formats.parse(text, fmt):
        if isinstance(parsed, LineError):
            dead.append(DeadLetter(uri, STAGE, f"line {number}: {parsed}", batch_id))
        else:
            good.append((number, parsed))
    if not good and not dead:
        dead.append(DeadLetter(uri, STAGE, f"no hash lines in {fmt} file", batch_id))
    return fmt, good, dead


def import_lists(files: list[str], fmt: str, label: str | None, meta_uri: str | None,
                 batch_id: str) -> tuple[list[VideoRecord], list[FrameRecord], list[DeadLetter]]:
    """Every item's records, and the dead letters of what could not be read.

    Items are keyed by URI across files, so a label used in two lists is one item (a URI is
    one live row in an index, never two).
    """
    sidecar = storage.read_sidecar(meta_uri, "uri")
    by_file = {row["file"]: row for row in sidecar.values() if row.get("file")}
    items: dict[str, tuple[str, list[HashLine]]] = {}  # uri -> (format, hashes)
    dead: list[DeadLetter] = []
    for uri in files:
        file_fmt, good, bad = _read_list(uri, fmt, batch_id)
        dead += bad
        if file_fmt == "vpdq":
            named = by_file.get(posixpath.basename(uri), {}).get("uri")
            grouped = {named or label or uri: [line for _, line in good]} if good else {}
        else:
            grouped = group_by_label(good, uri, label)
        for item_uri, hashes in grouped.items():
            items.setdefault(item_uri, (file_fmt, []))[1].extend(hashes)
    videos: list[VideoRecord] = []
    frames: list[FrameRecord] = []
    for item_uri, (item_fmt, hashes) in items.items():
        meta = storage.sidecar_lookup(sidecar, item_uri)
        video, rows = item_records(item_uri, hashes, item_fmt, batch_id, meta)
        videos.append(video)
        frames += rows
    return videos, frames, dead


def superseded(index_dir: str, manifest: Manifest, items: list[VideoRecord],
               batch_id: str) -> list[VideoRecord]:
    """Tombstones of the live items that re-imported URIs replace, as an index run makes for
    a replaced file: their rows in earlier batches stop being live."""
    if not manifest.partitions:
        return []
    latest = latest_videos(index_dir, manifest)
    uris = pa.array(sorted({item.uri for item in items}), pa.string())
    live = latest.filter(pc.and_(pc.is_in(latest.column("uri"), value_set=uris),
                                 pc.invert(latest.column("deleted"))))
    return [VideoRecord(**{**row, "batch_id": batch_id, "deleted": True, "warning": None})
            for row in live.to_pylist()]


def run(argv: list[str] | None = None) -> Partition:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    files = _files(args.hashes)
    listed_meta = [f for f in files if posixpath.basename(f) == VIDEOS_LIST]
    meta_uri = args.meta or (listed_meta[0] if len(listed_meta) == 1 else None)
    files = [f for f in files if f != meta_uri]
    if not files:
        raise SystemExit(f"framematch import: no files match {args.hashes}")
    defaults = PipelineOptions([]).view_as(IndexOptions)  # what a default index run records
    hashers = [h.strip() for h in defaults.hashers.split(",") if h.strip()]
    settings = batches.index_settings(KEY_HASHER, hashers, defaults.prune_d)
    try:
        manifest = batches.open_manifest(args.index, settings, must_match=False)
    except IndexVersionError as error:
        raise SystemExit(f"framematch import: {error}") from error

    batch_id = new_run_id()
    started = datetime.datetime.now(datetime.UTC)
    videos, frames, dead = import_lists(files, args.format, args.label, meta_uri, batch_id)
    videos = superseded(args.index, manifest, videos, batch_id) + videos
    for table, records in ((VIDEOS, videos), (DEAD_LETTER, dead)):
        batches.write_table(args.index, table, batch_id, records, INDEX_TABLES[table])
    batches.write_frames(args.index, batch_id,
                         pa.Table.from_pylist([r._asdict() for r in frames],
                                              schema=INDEX_TABLES[FRAMES]),
                         INDEX_TABLES[REFERENCES].empty_table(), manifest.shard_rows)
    try:
        partition = batches.commit_batch(args.index, manifest, batch_id, started,
                                         "import").partitions[-1]
    except CommitConflict as error:
        batches.discard_batch(args.index, batch_id)
        raise SystemExit(f"framematch import: {error}; nothing changed, run it again") \
            from error
    print(f"import {args.index}: batch {batch_id}: {len(files)} file(s), {partition.videos} "
          f"items, {partition.rows} hash rows, {partition.dead_letters} dead letters")
    if args.match:
        report_matches(args.index, [v.uri for v in videos if not v.deleted])
    return partition


def report_matches(index_dir: str, items: list[str]) -> None:
    """One line per (imported item, indexed video) that match under vPDQ's rule."""
    manifest = load_manifest(index_dir)
    live = live_videos(index_dir, manifest)
    found = match_imported(live, live_frames(index_dir, manifest, live), items)
    for item, video, verdict in found:
        print(f"match {item} -> {video} at {verdict.offset_s:.2f} s: "
              f"{verdict.query_share:.0f} % of its frames, {verdict.target_share:.0f} % of "
              f"the video's")
    unmatched = sorted(set(items) - {item for item, _, _ in found})
    for item in unmatched:
        print(f"no match {item}")
