"""Nightly re-matching: old images that matched nothing, against only what is new.

A night's "new matches" should include images posted before their source video was
indexed. Each match run records the index batches it searched (the ``runs`` table); images
whose latest answer was ``no_match`` are searched again against just the partitions added
since, which costs a fraction of a full re-match when the archive grows a little a night.
"""

from __future__ import annotations

import dataclasses

from apache_beam.io.filesystems import FileSystems

from schemas.manifest import Manifest
from transforms.io import parquet


def listed(patterns: list[str]) -> set[str]:
    """The files a run's input patterns name now (a pattern matching nothing names none)."""
    found = set()
    for pattern in patterns:
        try:
            found |= {m.path for m in FileSystems.match([pattern])[0].metadata_list}
        except Exception:  # noqa: BLE001 - Beam raises BeamIOError for an empty literal path
            continue
    return found


def pending(out: str, manifest: Manifest, exclude: set[str], run_id: str
            ) -> tuple[list[str], Manifest | None]:
    """URIs whose latest answer in ``out`` is no_match (and are not in ``exclude``, this
    run's own inputs), and the index restricted to the partitions some of their runs did
    not search; ([], None) when there is nothing to do. Records of ``run_id`` itself are
    ignored, so rerunning a run re-matches what it re-matched the first time."""
    base = out.rstrip("/")
    queries = parquet.read_pattern(f"{base}/queries/run_date=*/run_id=*/*.parquet",
                    ["query_uri", "status", "run_id"])
    runs = parquet.read_pattern(f"{base}/runs/run_date=*/run_id=*/*.parquet",
                 ["run_id", "ended", "index_batches"])
    if queries is None or runs is None:
        return [], None
    ended = dict(zip(runs.column("run_id").to_pylist(), runs.column("ended").to_pylist(),
                     strict=True))
    searched = dict(zip(runs.column("run_id").to_pylist(),
                        runs.column("index_batches").to_pylist(), strict=True))
    latest: dict[str, tuple] = {}
    for uri, status, query_run in zip(*(queries.column(c).to_pylist()
                                     for c in ("query_uri", "status", "run_id")), strict=True):
        if query_run == run_id or query_run not in ended:
            continue  # this run's own earlier attempt, or a run that never finished
        if uri not in latest or ended[query_run] > latest[uri][1]:
            latest[uri] = (status, ended[query_run], query_run)
    todo = sorted(u for u, (status, _, _) in latest.items()
                  if status == "no_match" and u not in exclude)
    if not todo:
        return [], None
    seen = set.intersection(*(set(searched[latest[u][2]] or []) for u in todo))
    new = [p for p in manifest.partitions if p.batch_id not in seen]
    if not new:
        return [], None
    return todo, dataclasses.replace(manifest, partitions=new)
