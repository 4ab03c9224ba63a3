"""Writing tables: one partition directory per run, with the schema from ``schemas/``."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquet


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
                                        file_name_suffix=".parquet")
        )


def parquet_files(directory: str) -> list[str]:
    """The Parquet files of one partition directory (empty when it does not exist)."""
    match = FileSystems.match([f"{directory.rstrip('/')}/*.parquet"])[0]
    return sorted(m.path for m in match.metadata_list)


def count_rows(directory: str) -> int:
    """Rows in a partition, from the Parquet footers only."""
    total = 0
    for path in parquet_files(directory):
        with FileSystems.open(path, compression_type="uncompressed") as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def read_table(directory: str, schema: pa.Schema) -> pa.Table:
    """A whole partition as one table (an empty table with the schema if there are no files)."""
    tables = []
    for path in parquet_files(directory):
        with FileSystems.open(path, compression_type="uncompressed") as f:
            tables.append(pq.read_table(f, schema=schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def delete_partition(directory: str) -> None:
    """Remove a partition so that a rerun replaces it instead of adding to it."""
    files = parquet_files(directory)
    if files:
        FileSystems.delete(files)
