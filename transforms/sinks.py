"""Writing tables: one partition directory per run, with the schema from ``schemas/``.

Beam's file sink writes each shard into a ``beam-temp-*`` directory inside the partition and
renames it into place when the pipeline finishes; a killed run leaves that directory behind.
Shards are named ``part-SSSSS-of-NNNNN.parquet`` by the shard template, not by a file-name
suffix, so the temporary files are ``<uuid>.part`` and readers' ``**/*.parquet`` globs never
pick up a shard of an unfinished run; and replacing a partition deletes everything under
it, leftovers of a killed run included.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquet

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
    """Remove a partition so that a rerun replaces it instead of adding to it: its shards
    and whatever a killed run left under it."""
    match = FileSystems.match([f"{directory.rstrip('/')}/**"])[0]
    files = [m.path for m in match.metadata_list]
    if files:
        FileSystems.delete(files)
