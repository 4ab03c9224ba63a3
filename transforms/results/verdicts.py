"""Analyst verdicts: "confirmed" or "rejected" per (posted image, archive video), append-only.

Each verdict is its own small Parquet file under ``OUT/verdicts/date=YYYY-MM-DD/``: verdicts
arrive one at a time, by hand, and appending a file never rewrites (or races with) anyone
else's. History is kept; readers take the latest verdict per pair (the ``latest_verdicts``
view of ``transforms.results.views``). A verdict is keyed by the image's sha256, so it holds for
every re-post of the same bytes.

The match job reads them inside its pipeline (``RejectedPairs``: Beam's Parquet source,
which reads ``gs://`` with the job's own credentials, where DuckDB has none), so the job
graph does not grow with the number of verdicts; ``latest`` is the one rule for "the
verdict that counts", which the DuckDB view ``latest_verdicts`` states again in SQL for
analysts (``tests/test_verdicts.py`` shows they agree).
"""

from __future__ import annotations

import datetime
import re
import secrets

import apache_beam as beam
import duckdb
from apache_beam.io.parquetio import ReadAllFromParquet

from schemas.runs import VERDICTS, VERDICTS_SCHEMA, VerdictRecord
from transforms.io.parquet import write_records
from transforms.results.views import connect, has_files

_SHA256 = re.compile(r"[0-9a-f]{64}")


def verdict_uri(out: str, at: datetime.datetime) -> str:
    return (f"{out.rstrip('/')}/verdicts/date={at.date().isoformat()}/"
            f"verdict-{at:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}.parquet")


def resolve_query(con: duckdb.DuckDBPyConnection, query: str) -> tuple[str, str]:
    """(sha256, uri) of a query given by URI or sha256, from the ``queries`` view."""
    column = "query_sha256" if _SHA256.fullmatch(query) else "query_uri"
    found = con.execute(
        f"select query_sha256, query_uri from queries where {column} = ? "
        "and query_sha256 is not null order by run_date desc, run_id desc limit 1",
        [query]).fetchall()
    if not found:
        raise ValueError(f"no decodable query {query!r} in the results' queries table")
    return found[0]


def record_verdict(out: str, query: str, video: str, verdict: str, analyst: str,
                   note: str | None = None) -> tuple[VerdictRecord, bool]:
    """Append a verdict; returns it and whether framematch ever matched the pair.

    A verdict on a pair that was never matched is kept: "this image does come from that
    video" is the label a missed match needs for calibration.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
    con = connect(out)
    sha256, uri = resolve_query(con, query)
    at = datetime.datetime.now(datetime.UTC)
    record = VerdictRecord(sha256, uri, video, verdict, analyst, note, at)
    write_records(verdict_uri(out, at), [record], VERDICTS_SCHEMA)
    (matched,), = con.execute(
        "select count(*) from matches where query_sha256 = ? and ref_uri = ?",
        [sha256, video]).fetchall()
    return record, bool(matched)


def latest_verdicts(out: str) -> dict[tuple[str, str], str]:
    """The latest verdict per (image sha256, archive video URI) in ``out`` (empty if none)."""
    if not has_files(out, "verdicts"):
        return {}
    rows = connect(out).execute(
        "select query_sha256, ref_uri, verdict from latest_verdicts").fetchall()
    return {(sha, video): verdict for sha, video, verdict in rows}


def latest(a: tuple, b: tuple) -> tuple:
    """Of two ``(at, verdict)`` of one pair, the one that counts: the later (a tie, which one
    analyst cannot make, goes to "rejected": the cautious answer)."""
    return max(a, b, key=lambda v: (v[0], v[1] == "rejected"))


class RejectedPairs(beam.PTransform):
    """``OUT``'s verdicts → ``(image sha256, archive video URI)`` of every pair whose latest
    verdict is "rejected" (nothing when no verdict was ever recorded)."""

    def __init__(self, out: str):
        super().__init__()
        self.glob = f"{out.rstrip('/')}/verdicts/date=*/*.parquet"

    def expand(self, pbegin):
        return (
            pbegin
            | "VerdictFiles" >> beam.Create([self.glob])
            | "ReadVerdicts" >> ReadAllFromParquet(
                columns=["query_sha256", "ref_uri", "verdict", "at"])
            | "ByPair" >> beam.Map(lambda r: ((r["query_sha256"], r["ref_uri"]),
                                              (r["at"], r["verdict"])))
            | "Latest" >> beam.CombinePerKey(lambda values: _latest_of(values))
            | "Rejected" >> beam.FlatMap(
                lambda kv: [kv[0]] if kv[1][1] == "rejected" else [])
        )


def _latest_of(values) -> tuple | None:
    found = None
    for value in values:
        if value is not None:
            found = value if found is None else latest(found, value)
    return found
