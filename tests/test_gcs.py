"""gs:// paths against a real Cloud Storage emulator on 127.0.0.1 (``tests/gcs_emulator.py``).

Everything goes through Beam's ``FileSystems`` and sinks as the jobs do. DuckDB cannot
reach the emulator: it reads gs:// only through its httpfs extension, which the wheel does
not bundle (installing it needs the network) and which speaks GCS's S3-compatible XML API,
which the emulator does not implement. So its check downloads the objects with
google-cloud-storage first and reads the local copies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import apache_beam
import apache_beam as beam
import duckdb
import pytest
from apache_beam.internal.gcp import auth
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from schemas.records import FRAMES_SCHEMA, FrameRecord
from tests.gcs_emulator import emulator_client, gcs_emulator
from transforms.io import gcs_auth, parquet

EMBEDDED = ["--runner=FnApiRunner"]


def frames(n: int) -> list[FrameRecord]:
    """Rows that use every column type of the frame table, including full-range uint64."""
    return [
        FrameRecord(video_id=i % 3, ts_start=i / 4, ts_end=(i + 1) / 4, region=i % 5,
                    key=bytes((i + j) % 256 for j in range(32)), flat=i % 7 == 0,
                    phash=(2**64 - 1 - i) if i % 2 else None, dhash=i * 2**40,
                    pdq=bytes([i % 256]) * 32, quality=i % 101)
        for i in range(n)
    ]


def test_filesystems_create_open_match_delete(gcs_bucket: str) -> None:
    prefix = f"gs://{gcs_bucket}/filesystems"
    payloads = {f"{prefix}/a.bin": os.urandom(300_000), f"{prefix}/b.bin": b"second"}
    for path, data in payloads.items():
        with FileSystems.create(path) as f:
            f.write(data)

    found = FileSystems.match([f"{prefix}/*.bin"])[0].metadata_list
    assert {m.path: m.size_in_bytes for m in found} == {p: len(d) for p, d in payloads.items()}
    for path, data in payloads.items():
        with FileSystems.open(path) as f:
            assert f.read() == data

    FileSystems.delete([f"{prefix}/a.bin"])
    assert not FileSystems.exists(f"{prefix}/a.bin")
    assert [m.path for m in FileSystems.match([f"{prefix}/*"])[0].metadata_list] == [
        f"{prefix}/b.bin"]


def test_parquet_sink_to_gcs_reads_back_with_pyarrow_and_duckdb(
        gcs_bucket: str, tmp_path: Path) -> None:
    directory = f"gs://{gcs_bucket}/parquet/frames"
    rows = frames(200)
    with beam.Pipeline(options=PipelineOptions(EMBEDDED)) as p:
        _ = p | beam.Create(rows) | parquet.WriteTable(directory, FRAMES_SCHEMA)

    # pyarrow through FileSystems.open, as the match job reads an index.
    assert parquet.parquet_files(directory), "the sink wrote no file"
    table = parquet.read_table(directory, FRAMES_SCHEMA).sort_by("ts_start")
    assert table.schema == FRAMES_SCHEMA
    assert table.to_pylist() == [r._asdict() for r in rows]

    # DuckDB on local copies downloaded from the emulator.
    for blob in emulator_client().list_blobs(gcs_bucket, prefix="parquet/frames/"):
        blob.download_to_filename(tmp_path / Path(blob.name).name)
    [(count, keys, top)] = duckdb.sql(
        f"SELECT count(*), count(DISTINCT key), max(phash) "
        f"FROM read_parquet('{tmp_path}/*.parquet')").fetchall()
    assert (count, keys, top) == (
        len(rows), len({r.key for r in rows}), max(r.phash for r in rows if r.phash))

    parquet.delete_partition(directory)
    assert parquet.count_rows(directory) == 0


def test_shim_is_applied_by_the_jobs_not_by_importing_framematch(gcs_bucket: str) -> None:
    """Importing framematch patches nothing; building a job's options under an emulator does.

    Run in a fresh interpreter, since this test process already has the shim applied.
    """
    probe = textwrap.dedent("""
        from apache_beam.internal.gcp import auth
        import pipelines.index, pipelines.match, pipelines.stream  # every transform module
        before = auth._Credentials._credentials_init
        from pipelines.options import beam_options
        beam_options([])
        print(before, auth._Credentials._credentials_init)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, env=os.environ)
    assert done.stdout.split() == ["False", "True"]


def test_shim_makes_credential_lookup_instant(gcs_bucket: str) -> None:
    start = time.monotonic()
    assert auth.get_service_credentials(PipelineOptions()) is None
    assert time.monotonic() - start < 1


def test_shim_leaves_real_gcs_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gcs_auth.EMULATOR_ENV, raising=False)
    cache = auth._Credentials
    before = (cache._credentials_init, cache._credentials)
    assert gcs_auth.use_anonymous_credentials_for_emulator() is False
    assert (cache._credentials_init, cache._credentials) == before


def test_shim_refuses_unknown_beam_version(
        gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apache_beam, "__version__", "2.78.0")
    with pytest.raises(RuntimeError, match="2.78.0"):
        gcs_auth.use_anonymous_credentials_for_emulator()


def test_emulator_context_restores_environment_and_stops() -> None:
    before = os.environ.get(gcs_auth.EMULATOR_ENV)
    with gcs_emulator(bucket="scratch") as bucket:
        endpoint = os.environ[gcs_auth.EMULATOR_ENV]
        assert endpoint != before
        assert [b.name for b in emulator_client().list_buckets()] == [bucket]
    assert os.environ.get(gcs_auth.EMULATOR_ENV) == before
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{endpoint}/", timeout=2)
