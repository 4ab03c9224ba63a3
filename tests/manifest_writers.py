"""A writer process for the commit-protocol tests: appends batches to one index's manifest
log through ``batches.appended`` and ``manifest_log.commit``, as an index run commits.

    python -m tests.manifest_writers INDEX NAME COUNT

Each batch is a real ``videos`` table (one live row, URI ``NAME-<i>``) written as its own
file, then committed against the manifest the writer read before writing it. On ``gs://``
the file is uploaded with google-cloud-storage: fake-gcs-server, the emulator that enforces
preconditions, lacks the batch API that Beam's rename (and so framematch's atomic writer)
uses; reading it back goes through Beam as in a real commit.
"""

from __future__ import annotations

import datetime
import io
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.manifest import Manifest, Partition, partition_dir
from schemas.records import INDEX_TABLES, VIDEOS, VideoRecord
from transforms.index import batches, manifest_log
from transforms.io import gcs_auth
from transforms.media.preprocess import PREPROCESS_VERSION

SETTINGS = dict(preprocess_version=PREPROCESS_VERSION, key_hasher="phash256", hashers=[],
                prune_d=8, regions=["full"], shard_rows=1000)


def video(uri: str, batch_id: str) -> VideoRecord:
    return VideoRecord(video_id=abs(hash(uri)) >> 2, uri=uri, sha256="0" * 64, size=1,
                       generation="1", start_time=0.0, duration=1.0, width=1, height=1,
                       codec="h264", n_frames_decoded=1, n_rows=0, batch_id=batch_id,
                       deleted=False, title=None, source_url=None, published=None,
                       rights=None, checksum=None)


def append(index_dir: str, batch_id: str, uri: str) -> Manifest:
    """Write a one-video batch and commit it against the manifest read first."""
    base = manifest_log.head(index_dir) or Manifest(**SETTINGS)
    record = video(uri, batch_id)
    if index_dir.startswith("gs://"):
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([record._asdict()], schema=INDEX_TABLES[VIDEOS]),
                       buffer)
        bucket, _, prefix = partition_dir(index_dir, VIDEOS, batch_id)[5:].partition("/")
        gcs_auth.storage_client().bucket(bucket).blob(f"{prefix}/part-0.parquet") \
            .upload_from_string(buffer.getvalue())
    else:
        batches.write_table(index_dir, VIDEOS, batch_id, [record], INDEX_TABLES[VIDEOS])
    partition = Partition(batch_id, datetime.datetime.now(datetime.UTC).isoformat(), 1, 0, 0, 0)
    return manifest_log.commit(index_dir, base,
                               batches.appended(index_dir, base, partition, {uri}), "test")


if __name__ == "__main__":
    gcs_auth.use_anonymous_credentials_for_emulator()
    index_dir, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(count):
        append(index_dir, f"20260101T000000Z-{name}{i:03d}", f"{name}-{i}")
