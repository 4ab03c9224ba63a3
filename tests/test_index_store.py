"""The index's one rule for "the state of a URI", in its two implementations."""

from __future__ import annotations

import itertools
import random

import pyarrow as pa

from schemas.records import VIDEOS_SCHEMA, VideoRecord
from transforms.index.changes import latest_row
from transforms.index.store import newest_per_uri


def video(uri: str, batch: str, deleted: bool, size: int) -> dict:
    return VideoRecord(video_id=size, uri=uri, sha256="s", size=size, generation="g",
                       start_time=0.0, duration=1.0, width=2, height=2, codec="h264",
                       n_frames_decoded=1, n_rows=1, batch_id=batch, deleted=deleted)._asdict()


def test_latest_row_and_newest_per_uri_agree() -> None:
    """Every history of up to three batches of a URI: indexed, tombstoned, replaced (a
    tombstone and a new row in one batch), re-indexed; both pick the same row."""
    rng = random.Random(0)
    rows, size = [], 0
    for n, states in enumerate(itertools.product(("none", "live", "dead", "replaced"),
                                                 repeat=3)):
        uri = f"gs://archive/{n:03d}.mp4"
        for batch, state in zip(("b1", "b2", "b3"), states, strict=True):
            for deleted in {"none": (), "live": (False,), "dead": (True,),
                            "replaced": (True, False)}[state]:
                size += 1
                rows.append(video(uri, batch, deleted, size))
    rng.shuffle(rows)  # neither may depend on the order rows are read in
    table = newest_per_uri(pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA)).to_pylist()
    by_uri: dict[str, list[dict]] = {}
    for row in rows:
        by_uri.setdefault(row["uri"], []).append(row)
    assert table == [latest_row(by_uri[uri]) for uri in sorted(by_uri)]
    assert len(table) == 4**3 - 1  # every history but "never indexed"
