"""Nightly re-matching: old images that matched nothing, against only what is new.

A night's "new matches" should include images posted before their source video was
indexed. Each match run records the index batches it searched (the ``runs`` table); images
whose latest answer was ``no_match`` are searched again against just the partitions added
since, which costs a fraction of a full re-match when the archive grows a little a night.

Which images: decided inside the pipeline (``EarlierUnmatched``), from every earlier run's
``queries`` files joined with the night's listing, so the job graph does not grow with the
history of posts. Which partitions: decided on the driver from the ``runs`` table alone
(one row per run, ``partitions_to_search``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.parquetio import ReadAllFromParquet

from schemas.manifest import Manifest
from transforms.io import parquet


def partitions_to_search(out: str, manifest: Manifest, run_id: str) -> Manifest | None:
    """The index restricted to the partitions some image still unmatched has not been
    searched against; None when there are none (or no earlier run).

    An earlier unmatched image has been searched against every batch of the latest finished
    run that re-matched (it either answered the image itself or re-matched it against what
    was new), and of every run after that one; so only those runs' records are needed.
    """
    runs = parquet.read_pattern(f"{out.rstrip('/')}/runs/run_date=*/run_id=*/*.parquet")
    if runs is None:
        return None
    records = sorted((r for r in runs.to_pylist()
                      if r["job"] == "match" and r["run_id"] != run_id),
                     key=lambda r: r["ended"])
    if not records:
        return None
    rematching = [i for i, r in enumerate(records) if r.get("n_rematched") is not None]
    since = records[rematching[-1]:] if rematching else records
    seen = set.intersection(*(set(r["index_batches"] or []) for r in since))
    new = [p for p in manifest.partitions if p.batch_id not in seen]
    return dataclasses.replace(manifest, partitions=new) if new else None


def latest_unmatched(element: tuple[str, dict[str, list]], run_id: str,
                     ended: dict[str, object]) -> Iterator[str]:
    """A URI, if its latest answer in a finished earlier run was no_match and tonight's
    listing does not name it (it is answered tonight anyway)."""
    uri, grouped = element
    if grouped["tonight"]:
        return
    answers = [(ended[r], status) for r, status in grouped["answers"]
               if r != run_id and r in ended]  # not this run's, not an unfinished run's
    if answers and max(answers)[1] == "no_match":
        yield uri


class EarlierUnmatched(beam.PTransform):
    """Tonight's listed URIs → the earlier runs' unmatched URIs to re-match (none listed)."""

    def __init__(self, out: str, run_id: str):
        super().__init__()
        self.base = out.rstrip("/")
        self.run_id = run_id

    def expand(self, tonight):
        p = tonight.pipeline
        ended = (
            p
            | "RunFiles" >> beam.Create([f"{self.base}/runs/run_date=*/run_id=*/*.parquet"])
            | "ReadRuns" >> ReadAllFromParquet(columns=["run_id", "job", "ended"])
            | "MatchRuns" >> beam.FlatMap(
                lambda r: [(r["run_id"], r["ended"])] if r["job"] == "match" else [])
        )
        answers = (
            p
            | "QueryFiles" >> beam.Create(
                [f"{self.base}/queries/run_date=*/run_id=*/*.parquet"])
            | "ReadAnswers" >> ReadAllFromParquet(columns=["query_uri", "status", "run_id"])
            | "ByUri" >> beam.Map(lambda q: (q["query_uri"], (q["run_id"], q["status"])))
        )
        return (
            {"answers": answers, "tonight": tonight | "Tonight" >> beam.Map(lambda u: (u, 1))}
            | "JoinWithTonight" >> beam.CoGroupByKey()
            | "LatestUnmatched" >> beam.FlatMap(latest_unmatched, self.run_id,
                                                beam.pvalue.AsDict(ended))
        )
