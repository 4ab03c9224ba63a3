"""The match job's in-pipeline reading of analysts' verdicts agrees with the analysts' own
DuckDB view: the latest verdict per (image, video) pair counts."""

from __future__ import annotations

import datetime
from pathlib import Path

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from schemas.runs import VERDICTS_SCHEMA, VerdictRecord
from tests.conftest import EMBEDDED
from transforms.io.parquet import write_records
from transforms.results.verdicts import RejectedPairs, verdict_uri
from transforms.results.views import connect

T = datetime.datetime(2026, 11, 26, 9, 0, tzinfo=datetime.UTC)


def test_rejected_pairs_in_the_pipeline_are_the_views(tmp_path: Path):
    out = str(tmp_path / "out")
    history = [("a", "v1", "rejected", 0), ("a", "v1", "confirmed", 60),  # changed its mind
               ("a", "v2", "confirmed", 0), ("a", "v2", "rejected", 30),
               ("b", "v1", "rejected", 0), ("c", "v3", "confirmed", 0)]
    for sha, video, verdict, seconds in history:
        at = T + datetime.timedelta(seconds=seconds)
        write_records(verdict_uri(out, at), [VerdictRecord(sha, f"{sha}.jpg", video, verdict,
                                                           "tester", None, at)],
                      VERDICTS_SCHEMA)
    view = set(connect(out).execute("select query_sha256, ref_uri from latest_verdicts "
                                    "where verdict = 'rejected'").fetchall())
    assert view == {("a", "v2"), ("b", "v1")}
    with beam.Pipeline(argv=EMBEDDED) as p:
        assert_that(p | RejectedPairs(out), equal_to(sorted(view)))
    with beam.Pipeline(argv=EMBEDDED) as p:  # no verdict ever recorded: nothing
        assert_that(p | RejectedPairs(str(tmp_path / "empty")), equal_to([]))
