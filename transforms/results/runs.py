"""The ``runs`` table: one Parquet row per finished job run, beside the tables it wrote.

Written after the pipeline has finished and its outputs were counted, in the same Hive
layout as the match tables (``OUT/runs/run_date=…/run_id=…/part-0.parquet``), so a rerun
with the same run id replaces its record and a season of nightly runs is one glob.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import sys
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from schemas.manifest import Manifest
from schemas.runs import RUNS_SCHEMA, RunRecord
from transforms.io import parquet


def framematch_version() -> str:
    try:
        return importlib.metadata.version("framematch")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def run_record(job: str, run_id: str, started: datetime.datetime, options: PipelineOptions,
               argv: Sequence[str] | None, index_dir: str, manifest: Manifest,
               threshold: int | None = None, **counts: int | None) -> RunRecord:
    """A run's record, ended now; ``counts`` are RunRecord's ``n_*`` and ``top_k`` fields.

    ``argv`` None means the command line (``sys.argv[1:]``), as in the jobs' ``run(argv)``.
    """
    return RunRecord(
        run_id=run_id,
        job=job,
        started=started,
        ended=datetime.datetime.now(datetime.UTC),
        runner=str(options.view_as(StandardOptions).runner),
        framematch_version=framematch_version(),
        preprocess_version=manifest.preprocess_version,
        index_dir=index_dir,
        index_batches=[p.batch_id for p in manifest.partitions],
        argv=list(sys.argv[1:] if argv is None else argv),
        threshold=threshold,
        prune_d=manifest.prune_d,
        radius=None if threshold is None else threshold + manifest.prune_d,
        **counts,
    )


def run_uri(out_dir: str, run_date: str, run_id: str) -> str:
    return f"{out_dir.rstrip('/')}/runs/run_date={run_date}/run_id={run_id}/part-0.parquet"


def write_run(out_dir: str, record: RunRecord, run_date: str | None = None) -> str:
    """Write ``record`` under ``out_dir/runs`` and return its URI.

    ``run_date`` is the partition date the run's other tables used (default: the UTC date
    the run started), so the record sits beside them and is replaced with them on a rerun.
    """
    uri = run_uri(out_dir, run_date or record.started.astimezone(datetime.UTC).date().isoformat(),
                  record.run_id)
    parquet.write_records(uri, [record], RUNS_SCHEMA)
    return uri
