"""Parquet tables on any Beam filesystem: the one writer and the one reader of partitions.

Every table is written with the schema from ``schemas/`` (a column never changes type
because one bundle held only nulls), by Beam (``WriteTable``) or, for the few records a
command writes itself, by ``write_records``, which makes the file appear whole or not at all.

Beam's file sink writes each shard into a ``beam-temp-*`` directory inside the partition and
renames it into place when the pipeline finishes; a killed run leaves that directory behind.
Shards are named ``part-SSSSS-of-NNNNN.parquet`` by the shard template, not by a file-name
suffix, so the temporary files are ``<uuid>.part`` and readers' ``**/*.parquet`` globs never
pick up a shard of an unfinished run; and replacing a partition deletes everything under
it, leftovers of a killed run included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquet

from transforms.io import storage

SHARD_NAME_TEMPLATE = "-SSSSS-of-NNNNN.parquet"


class WriteTable(beam.PTransform):
    """NamedTuple records → ``<directory>/part-SSSSS-of-NNNNN.parquet`` with an explicit schema."""

    def __init__(self, directory: str, schema: pa.Schema):
        super().__init__()
        self.directory = directory.rstrip("/")
        self.schema = schema

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return (
            records
            | "AsDict" >> beam.Map(lambda r: r._asdict())
            | "Write" >> WriteToParquet(f"{self.directory}/part", self.schema,
                                        shard_name_template=SHARD_NAME_TEMPLATE)
        )


def write_records(uri: str, records: Sequence[NamedTuple], schema: pa.Schema) -> None:
    """NamedTuples as one Parquet file at ``uri`` (local or ``gs://``), replacing it.

    The file is written under a hidden temporary name and renamed into place, so a reader
    (or a run killed half-way) never sees a partial or empty file at ``uri``.
    """
    write_arrow(uri, pa.Table.from_pylist([r._asdict() for r in records], schema=schema))


def write_arrow(uri: str, table: pa.Table, *, row_group_size: int | None = None) -> None:
    """An Arrow table as one Parquet file at ``uri``, appearing whole or not at all."""
    with storage.created_atomically(uri) as f:
        pq.write_table(table, f, row_group_size=row_group_size)


def parquet_files(directory: str) -> list[str]:
    """The Parquet files of one partition directory (empty when it does not exist)."""
    match = FileSystems.match([f"{directory.rstrip('/')}/*.parquet"])[0]
    return sorted(m.path for m in match.metadata_list)


def count_rows(directory: str) -> int:
    """Rows in a partition, from the Parquet footers only."""
    return sum(count_rows_of(path) for path in parquet_files(directory))


def count_rows_of(path: str) -> int:
    """Rows in one Parquet file, from its footer."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return pq.ParquetFile(f).metadata.num_rows


def rows_and_nulls(path: str, column: str) -> tuple[int, int]:
    """Rows in one Parquet file and nulls in one of its columns, from its footer."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        metadata = pq.ParquetFile(f).metadata
    at = metadata.schema.names.index(column)
    nulls = sum(metadata.row_group(i).column(at).statistics.null_count
                for i in range(metadata.num_row_groups))
    return metadata.num_rows, nulls


def read_table(directory: str, schema: pa.Schema) -> pa.Table:
    """A whole partition as one table (an empty table with the schema if there are no files)."""
    return read_files(parquet_files(directory), schema=schema)


def read_rows_between(path: str, column: str, low: float, high: float) -> pa.Table | None:
    """The rows of one file with ``low <= column <= high``, reading only the row groups whose
    statistics overlap that range (a file sorted by ``column`` in small row groups is read a
    few groups at a time); None if the file does not exist."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type="uncompressed") as f:
        parquet_file = pq.ParquetFile(f)
        metadata = parquet_file.metadata
        at = metadata.schema.names.index(column)
        groups = []
        for i in range(metadata.num_row_groups):
            stats = metadata.row_group(i).column(at).statistics
            if stats is None or not stats.has_min_max or (stats.min <= high and
                                                          stats.max >= low):
                groups.append(i)
        table = parquet_file.read_row_groups(groups)
    values = table.column(column)
    return table.filter(pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high)))


def read_pattern(pattern: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    """The files matching a glob (``OUT/queries/run_date=*/run_id=*/*.parquet``) as one
    table of ``columns``, columns added over time unified by name; None if none match."""
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    return read_files(paths, columns=columns) if paths else None


def read_files(paths: Sequence[str], *, schema: pa.Schema | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
    """Parquet files as one table: with ``schema`` each is read as that schema (the empty
    table when there are none); without, their own schemas are unified by name."""
    tables = []
    for path in paths:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            tables.append(pq.read_table(f, schema=schema, columns=columns))
    if not tables:
        return schema.empty_table() if schema is not None else pa.table({})
    return pa.concat_tables(tables, promote_options="none" if schema else "default")


def delete_partition(directory: str) -> None:
    """Remove a partition so that a rerun replaces it instead of adding to it: its shards
    and whatever a killed run left under it."""
    match = FileSystems.match([f"{directory.rstrip('/')}/**"])[0]
    files = [m.path for m in match.metadata_list]
    if files:
        FileSystems.delete(files)
