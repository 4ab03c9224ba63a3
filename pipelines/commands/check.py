"""``framematch check OUT``: prove that a match output or an index accounts for every input.

    framematch check OUT [--no_relist]     (a match output directory, or an index directory)

Match output, for every run with a record in ``OUT/runs``: each input URI appears exactly
once in ``queries``; the failed ones, and only they, once in ``dead_letter``; the matched
ones, and only they, in ``matches``; the number of queries is the run's ``n_inputs`` (counted
where the inputs entered); and (unless ``--no_relist``) the inputs listed again from the
run's ``--images`` are exactly the queried URIs, less the earlier unmatched images the run
re-matched (as many as it recorded in ``n_rematched``, each an earlier run's no_match).
A partition without a run record is a run that was interrupted: its rows are not complete,
and rerunning with its ``--run_id`` replaces them.

Index: every live batch's files hold the counts its manifest entry says (a missing or
partial file shows); its shards list each of its frames files once and hold their rows; no
URI is both indexed and dead-lettered in a batch, or indexed twice; and every index run's
listed files are indexed, unchanged or dead-lettered
(``n_inputs = n_videos + n_unchanged + n_dead_letters`` in ``INDEX/runs``).

Exit status 0 when everything reconciles, 1 on any mismatch (each printed on one line).
"""

from __future__ import annotations

import collections
import shlex
from collections.abc import Iterator, Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines.match import run_partition
from pipelines.options import CommandParser
from schemas.manifest import Partition, partition_dir
from schemas.records import (
    DEAD_LETTER_SCHEMA,
    FRAMES,
    MATCH_TABLES,
    SHARDS,
    SHARDS_SCHEMA,
    VIDEOS_SCHEMA,
)
from transforms.index.store import load_manifest
from transforms.io import parquet, storage


def run_records(out: str) -> list[dict]:
    """Every run record under ``out/runs``, with its partition's ``run_date``."""
    records = []
    for path in sorted(m.path for m in FileSystems.match(
            [f"{out.rstrip('/')}/runs/run_date=*/run_id=*/*.parquet"])[0].metadata_list):
        for row in parquet.read_files([path]).to_pylist():
            records.append({**row, "run_date": _key(path, "run_date")})
    return records


def _key(path: str, name: str) -> str:
    return next(p.split("=", 1)[1] for p in path.split("/") if p.startswith(f"{name}="))


def _duplicates(values: list[str]) -> list[str]:
    return sorted(v for v, n in collections.Counter(values).items() if n > 1)


def _flag(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name`` in a recorded command line (either spelling)."""
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def listed_inputs(source: str) -> set[str]:
    """The input URIs a match run over ``source`` lists (as ``ListFiles`` does)."""
    results = FileSystems.match(storage.expand_source(source))
    return {m.path for r in results for m in r.metadata_list}


def check_match_output(out: str, relist: bool = True) -> Iterator[str]:
    """The problems of a match output directory, one line each."""
    records = [r for r in run_records(out) if r["job"] == "match"]
    recorded = {(r["run_date"], r["run_id"]) for r in records}
    written = {(_key(p, "run_date"), _key(p, "run_id")) for table in MATCH_TABLES
               for p in (m.path for m in FileSystems.match(
                   [f"{out.rstrip('/')}/{table}/run_date=*/run_id=*/*.parquet"])[0]
                   .metadata_list)}
    for run_date, run_id in sorted(written - recorded):
        yield (f"run {run_id} ({run_date}) has output but no run record: interrupted, rerun "
               f"it with --run_id {run_id} --run_date {run_date}")
    by_run = {r["run_id"]: {t: parquet.read_table(run_partition(out, t, r["run_date"],
                                                               r["run_id"]), schema).to_pylist()
                            for t, schema in MATCH_TABLES.items()} for r in records}
    for record in records:
        unmatched = unmatched_before(record, records, by_run)
        yield from (f"run {record['run_id']}: {p}"
                    for p in _check_run(record, by_run[record["run_id"]], relist, unmatched))


def unmatched_before(record: dict, records: list[dict],
                     by_run: dict[str, dict[str, list[dict]]]) -> set[str]:
    """The URIs whose latest answer, in the runs that ended before ``record`` started, was
    no_match: what that run may have re-matched (they are not in its own listing)."""
    latest: dict[str, tuple] = {}
    for earlier in records:
        if earlier["run_id"] == record["run_id"] or earlier["ended"] >= record["started"]:
            continue
        for q in by_run[earlier["run_id"]]["queries"]:
            uri = q["query_uri"]
            if uri not in latest or earlier["ended"] > latest[uri][0]:
                latest[uri] = (earlier["ended"], q["status"])
    return {uri for uri, (_, status) in latest.items() if status == "no_match"}


def _check_run(record: dict, tables: dict[str, list[dict]], relist: bool,
               unmatched_before: set[str] = frozenset()) -> Iterator[str]:
    uris = [q["query_uri"] for q in tables["queries"]]
    if dup := _duplicates(uris):
        yield f"{len(dup)} inputs in queries more than once, e.g. {dup[0]}"
    if len(uris) != record["n_inputs"]:
        yield f"{len(uris)} queries, but the run recorded {record['n_inputs']} inputs"
    failed = {q["query_uri"] for q in tables["queries"] if q["status"] == "failed"}
    dead = [d["uri"] for d in tables["dead_letter"]]
    if _duplicates(dead) or set(dead) != failed:
        yield (f"dead letters ({len(dead)}) are not the failed queries ({len(failed)}) "
               f"once each")
    matched = {q["query_uri"] for q in tables["queries"] if q["status"] == "matched"}
    if {m["query_uri"] for m in tables["matches"]} != matched:
        yield "the images in matches are not the matched queries"
    source = _flag(record["argv"], "images")
    if relist and source:
        listed = listed_inputs(source)
        missing, extra = sorted(listed - set(uris)), sorted(set(uris) - listed)
        rematched = [u for u in extra if u in unmatched_before]
        extra = [u for u in extra if u not in unmatched_before]
        if missing:
            yield f"{len(missing)} listed inputs have no query row, e.g. {missing[0]}"
        if record.get("n_rematched") is not None and len(rematched) != record["n_rematched"]:
            yield (f"{len(rematched)} queried URIs are earlier unmatched images, but the run "
                   f"re-matched {record['n_rematched']}")
        if extra:
            yield (f"{len(extra)} queried URIs are not listed by --images {shlex.quote(source)}"
                   f" any more, e.g. {extra[0]}")


def _check_shards(index_dir: str, p: Partition) -> Iterator[str]:
    """A batch's shards hold each of its frames files once, and all the rows of the batch."""
    shards = parquet.read_table(partition_dir(index_dir, SHARDS, p.batch_id),
                                SHARDS_SCHEMA).to_pylist()
    listed = [name for shard in shards for name in shard["files"]]
    on_disk = {path.rsplit("/", 1)[-1]: parquet.count_rows_of(path) for path in
               parquet.parquet_files(partition_dir(index_dir, FRAMES, p.batch_id))}
    in_files = {name for name, rows in on_disk.items() if rows}
    if len(shards) != p.shards or _duplicates(listed) or set(listed) != in_files:
        yield (f"batch {p.batch_id}: {len(shards)} shards listing {len(listed)} files, the "
               f"manifest says {p.shards} shards and {len(in_files)} files hold rows")
    for shard in shards:
        if shard["n_rows"] != sum(on_disk.get(name, 0) for name in shard["files"]):
            yield f"batch {p.batch_id}: shard {shard['shard']} does not hold its rows"


def check_index(index_dir: str) -> Iterator[str]:
    """The problems of an index directory, one line each."""
    manifest = load_manifest(index_dir)
    live = {p.batch_id: p for p in manifest.partitions}
    for p in manifest.partitions:
        videos = parquet.read_table(partition_dir(index_dir, "videos", p.batch_id),
                                  VIDEOS_SCHEMA).to_pylist()
        indexed = [v["uri"] for v in videos if not v["deleted"]]
        dead = [d["uri"] for d in parquet.read_table(
            partition_dir(index_dir, "dead_letter", p.batch_id), DEAD_LETTER_SCHEMA).to_pylist()]
        frames = parquet.count_rows(partition_dir(index_dir, "frames", p.batch_id))
        found = (len(indexed), len(videos) - len(indexed), frames, len(dead))
        expected = (p.videos, p.tombstones, p.rows, p.dead_letters)
        if found != expected:
            yield (f"batch {p.batch_id}: files hold (videos, tombstones, frames, dead letters) "
                   f"{found}, the manifest says {expected}")
        if dup := _duplicates(indexed) + _duplicates(dead):
            yield f"batch {p.batch_id}: {dup[0]} more than once"
        if both := sorted(set(indexed) & set(dead)):
            yield f"batch {p.batch_id}: {both[0]} both indexed and dead-lettered"
        yield from _check_shards(index_dir, p)
    for record in run_records(index_dir):
        if record["job"] != "index" or record["run_id"] not in live:
            continue  # rolled back or compacted away
        out = record["n_videos"] + record["n_unchanged"] + record["n_dead_letters"]
        if out != record["n_inputs"]:
            yield (f"batch {record['run_id']}: {record['n_inputs']} files listed, {out} "
                   f"indexed, unchanged or dead-lettered")


def run(argv: Sequence[str]) -> int:
    parser = CommandParser(prog="framematch check", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="A match output directory or an index directory.")
    parser.add_argument("--no_relist", action="store_true",
                        help="Do not list a match run's inputs again (they moved since).")
    args = parser.parse_args(argv)
    is_index = load_manifest(args.out) is not None
    problems = list(check_index(args.out) if is_index
                    else check_match_output(args.out, not args.no_relist))
    for problem in problems:
        print(f"check {args.out}: MISMATCH: {problem}")
    what = "index" if is_index else "match output"
    print(f"check {args.out} ({what}): "
          + (f"{len(problems)} mismatches" if problems else "every input accounted for"))
    return 1 if problems else 0
