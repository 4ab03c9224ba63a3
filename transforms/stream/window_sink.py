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
import posixpath
import uuid
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


def compact(out: str, table: str, schema: pa.Schema, run_date: str = "*",
            run_id: str = "*") -> dict[str, int]:
    """Merge the Parquet files of each matching ``run_date=…/run_id=…`` directory into one.

    Returns ``{merged file: files it replaced}``. Safe while a stream still writes there: only
    the files listed at the start are merged and deleted, later ones stay. The merged file is
    written whole and renamed into place (``storage.created_atomically``), then the small files are
    deleted, so a reader never misses a row; between that rename and the delete (one delete
    call: milliseconds locally, one batch request on GCS) a query that lists the directory
    sees the merged rows twice, and a query that listed the small files before the delete
    and opens one after it fails with "file not found" and must be rerun. Row groups are
    copied file by file, so memory holds one small file at a time.
    """
    pattern = f"{out.rstrip('/')}/{table}/run_date={run_date}/run_id={run_id}/*.parquet"
    by_dir: dict[str, list[str]] = {}
    for meta in FileSystems.match([pattern])[0].metadata_list:
        by_dir.setdefault(posixpath.dirname(meta.path), []).append(meta.path)
    merged = {}
    for directory, files in sorted(by_dir.items()):
        if len(files) < 2:
            continue
        files.sort()
        first = posixpath.basename(files[0]).removesuffix(".parquet")
        uri = f"{directory}/{first}-compact-{uuid.uuid4().hex[:8]}.parquet"
        with storage.created_atomically(uri) as f, pq.ParquetWriter(f, schema) as writer:
            for path in files:
                writer.write_table(parquet.read_files([path], schema=schema))
        FileSystems.delete(files)
        merged[uri] = len(files)
    return merged
