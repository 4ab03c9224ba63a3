"""Streaming tables: one Parquet file per window, visible all at once, compacted later.

Beam 2.77's ``WriteToParquet`` names windowed shards ``part-[0.0, 5.0)-...`` (brackets,
commas, spaces) and its ``triggering_frequency`` replaces the pipeline's windowing, so the
streaming job writes its own files: each fixed window's rows of a table go to

    OUT/<table>/run_date=<UTC date of the window start>/run_id=<run>/part-<start>-p<pane>.parquet

The name is a function of the window and pane, so a bundle the runner retries overwrites its
own file instead of adding a duplicate. The file is written under a hidden temporary name
(``.part-….parquet.tmp``: neither DuckDB's ``*.parquet`` nor pyarrow's dataset discovery,
which skips dot files, sees it) and renamed into place, so a reader never opens half a file.

Frequent windows make many small files; ``compact`` merges the files of each
``run_date=…/run_id=…`` directory into one (see its docstring for what readers see).
"""

from __future__ import annotations

import datetime
import json
import posixpath
import zlib
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.io import parquet, storage

WRITERS_PER_WINDOW = 4  # files per table and window pane, written in parallel


def window_file(out: str, table: str, run_id: str, start: datetime.datetime, pane: int,
                writer: int = 0) -> str:
    """The final URI of one window pane's file of ``table`` from one of its writers."""
    stamp = f"{start:%Y%m%dT%H%M%S}.{start.microsecond // 1000:03d}Z"
    return (f"{out.rstrip('/')}/{table}/run_date={start.date().isoformat()}/run_id={run_id}/"
            f"part-{stamp}-p{pane}-w{writer}.parquet")


def writer_of(record: tuple, writers: int) -> int:
    """Which of a window's writers takes a record: by its first field (the input URI), so
    every row of one input lands in the same file."""
    return zlib.crc32(str(record[0]).encode()) % writers


class _WriteWindowFile(beam.DoFn):
    def __init__(self, out: str, table: str, schema: pa.Schema, run_id: str):
        self.out = out
        self.table = table
        self.schema = schema
        self.run_id = run_id
        self.files = Metrics.counter("stream", f"{table}_files")

    def process(self, element, window=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam) -> Iterator[tuple[str, int]]:
        writer, rows = element[0], list(element[1])
        start = window.start.to_utc_datetime().replace(tzinfo=datetime.UTC)
        uri = window_file(self.out, self.table, self.run_id, start, pane.index, writer)
        with storage.created_atomically(uri) as f:
            pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), f)
        self.files.inc()
        yield uri, len(rows)


class WriteWindowedTable(beam.PTransform):
    """Windowed NamedTuple records → Parquet files per window pane: ``(uri, rows)`` out.

    A window's rows are spread over ``writers`` keys (by input URI), so no single worker
    has to take a whole window, and each writer writes one file per window pane; the
    small files are merged later (``compact``).
    """

    def __init__(self, out: str, table: str, schema: pa.Schema, run_id: str,
                 writers: int = WRITERS_PER_WINDOW):
        super().__init__()
        self.out = out
        self.table = table
        self.schema = schema
        self.run_id = run_id
        self.writers = writers

    def expand(self, records):
        writers = self.writers
        return (
            records
            | "ByWriter" >> beam.Map(lambda r: (writer_of(r, writers), r._asdict()))
            | "PerWindow" >> beam.GroupByKey()
            | "WriteFile" >> beam.ParDo(
                _WriteWindowFile(self.out, self.table, self.schema, self.run_id))
        )


REPLACES = b"framematch.replaces"  # a merged file's key-value metadata: the files it merged


def _replaced(path: str) -> list[str]:
    """The names of the files a merged file replaced (none for a window's own file)."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        metadata = pq.read_schema(f).metadata or {}
    return json.loads(metadata[REPLACES]) if REPLACES in metadata else []


def compact(out: str, table: str, schema: pa.Schema, run_date: str = "*",
            run_id: str = "*") -> dict[str, int]:
    """Merge the Parquet files of each matching ``run_date=…/run_id=…`` directory into one.

    Returns ``{merged file: files it replaced}``. Safe while a stream still writes there: only
    the files listed at the start are merged and deleted, later ones stay. Idempotent, so a
    crash at any step leaves each row exactly once after the next compaction (the stream
    runs one when it stops; ``framematch stream --compact`` runs one on demand):

    1. the merged file is written whole under a hidden name, recording in its Parquet
       metadata the names of the files it merges (a crash here leaves an invisible
       temporary file, deleted by the next compaction);
    2. it is renamed into place under a name fixed by those files, so a rerun over the same
       files writes the same name instead of a second copy;
    3. the merged files are deleted. Between 2 and 3 a query that lists the directory sees
       those rows twice; a crash there leaves them twice until the next compaction, which
       first finishes what a merged file records (deletes its leftover sources).

    A query that listed the small files before 3 and opens one after it fails with "file
    not found" and must be rerun. Row groups are copied file by file, so memory holds one
    small file at a time. One compaction of a directory at a time (two at once over
    different file sets would each keep the rows they merged).
    """
    base = f"{out.rstrip('/')}/{table}/run_date={run_date}/run_id={run_id}"
    by_dir: dict[str, set[str]] = {}
    for result in FileSystems.match([f"{base}/*", f"{base}/.*"]):  # local globs hide dot files
        for meta in result.metadata_list:
            by_dir.setdefault(posixpath.dirname(meta.path), set()).add(meta.path)
    merged = {}
    for directory, paths in sorted(by_dir.items()):
        files = _finish_interrupted(directory, sorted(paths))
        if len(files) < 2:
            continue
        files.sort()
        names = [posixpath.basename(f) for f in files]
        first = names[0].removesuffix(".parquet").split("-compact-")[0]
        digest = zlib.crc32("\n".join(names).encode())
        uri = f"{directory}/{first}-compact-{digest:08x}.parquet"
        recorded = schema.with_metadata({REPLACES: json.dumps(names).encode()})
        with storage.created_atomically(uri) as f, pq.ParquetWriter(f, recorded) as writer:
            for path in files:
                writer.write_table(parquet.read_files([path], schema=schema))
        FileSystems.delete(files)
        merged[uri] = len(files)
    return merged


def _finish_interrupted(directory: str, paths: list[str]) -> list[str]:
    """Complete what an interrupted compaction left in ``directory``: delete the sources a
    merged file records that are still there, and its hidden temporary files. Returns the
    Parquet files left to merge."""
    visible = [p for p in paths if p.endswith(".parquet")
               and not posixpath.basename(p).startswith(".")]
    names = {posixpath.basename(p): p for p in visible}
    leftovers = {names[n] for p in visible if "-compact-" in p for n in _replaced(p)
                 if n in names}
    stale_tmp = [p for p in paths if posixpath.basename(p).startswith(".")
                 and "-compact-" in p and p.endswith(".tmp")]
    if leftovers or stale_tmp:
        FileSystems.delete(sorted(leftovers) + stale_tmp)
    return [p for p in visible if p not in leftovers]
