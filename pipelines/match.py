"""``framematch match``: posted images traced to the video and moment they came from.

    framematch match --index DIR --images SRC --out DIR [--meta SIDECAR] [--threshold T]

Writes ``OUT/<table>/run_date=YYYY-MM-DD/run_id=<id>/part-*.parquet`` for the tables
``matches``, ``queries`` and ``dead_letter`` (Hive partitions: DuckDB reads them with
``read_parquet('OUT/matches/**/*.parquet', hive_partitioning=true)``). Rerunning with the
same ``--run_id`` replaces that run's partitions.
"""

from __future__ import annotations

import datetime
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.metrics import print_metrics
from pipelines.options import CommonOptions, beam_options, configure_logging, is_dry_run, new_run_id
from schemas.records import DEAD_LETTER, MATCH_TABLES, MATCHES, QUERIES, QUERIES_SCHEMA
from schemas.runs import RunRecord
from transforms.index.store import has_imported_lists, load_manifest, require_compatible
from transforms.io import parquet, storage
from transforms.io.listing import CountInputs, ListFiles, ReadSidecar
from transforms.match import rematch
from transforms.match.answer import AnswerQueries, AttachPostMetadata
from transforms.match.intake import FingerprintQuery, HashQuery
from transforms.match.search_stage import SearchShardedIndex
from transforms.results import runs, verdicts
from transforms.verify.stage import SURE_DISTANCE, VerifyWithStoredPictures

DEFAULT_THRESHOLD = 40  # bits of the 256-bit key; the search radius adds the index's prune_d
RESCUE_ROWS = 4  # nearest rows fetched per rescue candidate checked (rows of one span merge)


class MatchOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--images", help="Directory, glob, list file or gs:// prefix.")
        parser.add_argument("--out", help="Output directory (local or gs://).")
        parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                            help="Bits of the key hash a match may differ by (before prune_d).")
        parser.add_argument("--top_k", type=int, default=5, help="Spans kept per query.")
        parser.add_argument("--max_variants", type=int, default=16,
                            help="Query variants hashed per image (cost bound).")
        parser.add_argument("--max_pixels", type=int, default=50_000_000,
                            help="Images with more pixels are refused (decompression bombs).")
        parser.add_argument("--fast", dest="verify", action="store_false", default=True,
                            help="Hashes only: skip the local-feature check (faster; finds "
                                 "fewer rotated and cropped posts, and the moment less often "
                                 "in slow pans and near-static shots).")
        parser.add_argument("--verify", dest="verify", action="store_true",
                            help="Re-check the candidates with local features (ORB + RANSAC) "
                                 "against the index's stored pictures, choose the moment by "
                                 "them, and rescue queries the hashes could not place: the "
                                 "default (the flag is kept for scripts that name it).")
        parser.add_argument("--verify_k", type=int, default=3,
                            help="Spans re-checked per query (more when these are rejected).")
        parser.add_argument("--rescue_radius", type=int, default=100,
                            help="How far (bits) the nearest rows of an unplaced query may "
                                 "be to be re-checked.")
        parser.add_argument("--no_rematch", action="store_true",
                            help="Do not re-match earlier runs' unmatched images (in --out) "
                                 "against the index batches added since they ran.")
        parser.add_argument("--max_index_memory_mb", type=int, default=2048,
                            help="Memory a worker process may hold in loaded index shards; "
                                 "the least recently used are dropped past it.")
        parser.add_argument("--run_id", default=None, help="Rerun (and replace) this run.")
        parser.add_argument("--run_date", default=None, help="Partition date, YYYY-MM-DD.")


def run_partition(out: str, table: str, run_date: str, run_id: str) -> str:
    return f"{out.rstrip('/')}/{table}/run_date={run_date}/run_id={run_id}"


class MatchImages(beam.PTransform):
    """Image URIs → {'matches', 'queries', 'dead_letter'} PCollections."""

    def __init__(self, index_dir: str, manifest, opts: MatchOptions, run_id: str,
                 sidecar: beam.PCollection | None = None, refresh_s: float | None = None,
                 pdq_lists: bool = False, rejected: beam.PCollection | None = None):
        super().__init__()
        self.rejected = rejected
        self.refresh_s = refresh_s
        self.pdq_lists = pdq_lists
        self.index_dir = index_dir
        self.manifest = manifest
        self.opts = opts
        self.run_id = run_id
        self.sidecar = sidecar

    def expand(self, uris):
        o = self.opts
        hasher = self.manifest.key_hasher
        fingerprints = uris | "Fingerprint" >> beam.ParDo(
            FingerprintQuery(self.run_id)).with_outputs(
                DEAD_LETTER, QUERIES, main="keys")
        hashed = (
            fingerprints.keys
            | "GroupReposts" >> beam.GroupByKey()
            | "HashVariants" >> beam.ParDo(HashQuery(
                hasher, o.max_variants, o.max_pixels, self.run_id, keep_picture=o.verify,
                pdq=self.pdq_lists,
            )).with_outputs(DEAD_LETTER, QUERIES, main="hashed")
        )
        candidates = hashed.hashed | "Search" >> SearchShardedIndex(
            self.index_dir, self.manifest, o.threshold + self.manifest.prune_d, o.top_k,
            o.max_index_memory_mb << 20, self.refresh_s,
            rescue_k=RESCUE_ROWS * o.verify_k if o.verify else 0,
            rescue_radius=o.rescue_radius,
            rescue_above=SURE_DISTANCE, rejected=self.rejected)
        if o.verify:
            candidates = candidates | "Verify" >> VerifyWithStoredPictures(o.verify_k, o.threshold)
        answered = candidates | "Answer" >> beam.ParDo(AnswerQueries(
            o.threshold + self.manifest.prune_d, self.run_id,
        )).with_outputs(QUERIES, main="matches")
        matches = answered.matches
        queries = ((fingerprints[QUERIES], hashed[QUERIES], answered[QUERIES])
                   | "AllQueries" >> beam.Flatten())
        if self.sidecar is not None:  # the posts' metadata, by URI, from a side input
            side = beam.pvalue.AsMultiMap(self.sidecar)
            matches = matches | "MatchMetadata" >> beam.ParDo(AttachPostMetadata(), side)
            queries = queries | "QueryMetadata" >> beam.ParDo(AttachPostMetadata(), side)
        return {
            MATCHES: matches,
            QUERIES: queries,
            DEAD_LETTER: (fingerprints[DEAD_LETTER], hashed[DEAD_LETTER])
            | "AllDeadLetters" >> beam.Flatten(),
        }


def run(argv: list[str] | None = None) -> dict[str, str]:
    """Match one run; returns its partition directories by table."""
    return execute(argv)[0]


def execute(argv: list[str] | None = None) -> tuple[dict[str, str], RunRecord | None]:
    """``run``, also returning the run's record (what ``framematch`` judges the outcome by)."""
    options = beam_options(list(sys.argv[1:] if argv is None else argv), "match", [MatchOptions])
    opts = options.view_as(MatchOptions)
    common = options.view_as(CommonOptions)
    configure_logging(common.verbose)
    if not common.index or not opts.images or not opts.out:
        raise SystemExit("framematch match: --index, --images and --out are required")
    manifest = load_manifest(common.index)
    if manifest is None:
        raise SystemExit(f"framematch match: no index at {common.index} (no manifest.json)")
    require_compatible(manifest, common.index)
    run_id = opts.run_id or new_run_id()
    run_date = opts.run_date or datetime.datetime.now(datetime.UTC).date().isoformat()
    partitions = {t: run_partition(opts.out, t, run_date, run_id) for t in MATCH_TABLES}
    for directory in partitions.values():
        parquet.delete_partition(directory)
    patterns = storage.expand_source(opts.images)
    new_partitions = None if opts.no_rematch else rematch.partitions_to_search(
        opts.out, manifest, run_id)
    if new_partitions is not None:
        print(f"match: re-matching earlier unmatched images against "
              f"{len(new_partitions.partitions)} index batches added since")
    started = datetime.datetime.now(datetime.UTC)
    with beam.Pipeline(options=options) as p:
        rejected = p | "RejectedPairs" >> verdicts.RejectedPairs(opts.out)
        sidecar = p | "PostMetadata" >> ReadSidecar(common.meta) if common.meta else None
        listed = (
            p
            | "ListImages" >> ListFiles(patterns)
            | "Paths" >> beam.Map(lambda m: m.path)
            | "OncePerUri" >> beam.Distinct()
            | "CountListed" >> beam.ParDo(CountInputs("match", "images_listed"))
        )
        tables = listed | "MatchImages" >> MatchImages(
            common.index, manifest, opts, run_id, sidecar,
            pdq_lists=has_imported_lists(manifest), rejected=rejected)
        if new_partitions is not None:  # old no-match images, against the batches since
            again = (
                listed
                | "OldUnmatched" >> rematch.EarlierUnmatched(opts.out, run_id)
                | "CountRematched" >> beam.ParDo(CountInputs("match", "images_rematched"))
                | "Rematch" >> MatchImages(common.index, new_partitions, opts, run_id, sidecar,
                                           pdq_lists=has_imported_lists(new_partitions),
                                           rejected=rejected)
            )
            tables = {name: (tables[name], again[name]) | f"All_{name}" >> beam.Flatten()
                      for name in tables}
        for name, records in tables.items():
            _ = records | f"Write_{name}" >> parquet.WriteTable(partitions[name],
                                                               MATCH_TABLES[name])
    if is_dry_run(options):
        print("framematch match: dry run: the job was built, not run")
        return partitions, None
    metrics = print_metrics(p.result, "match")
    print_metrics(p.result, "verify")
    listed, rematched = metrics.get("images_listed", 0), metrics.get("images_rematched", 0)
    counts = {t: parquet.count_rows(d) for t, d in partitions.items()}
    statuses = parquet.read_table(partitions["queries"], QUERIES_SCHEMA).column("status")
    tally = {s: statuses.to_pylist().count(s) for s in ("matched", "no_match", "failed")}
    print(f"match run {run_id}: {listed} images listed, {rematched} re-matched; "
          f"{counts['queries']} answered: {tally['matched']} matched, "
          f"{tally['no_match']} no match, {tally['failed']} failed; {counts['matches']} match "
          f"rows, {counts['dead_letter']} dead letters -> {opts.out}")
    record = runs.run_record(
        "match", run_id, started, options, argv, common.index, manifest,
        # inputs as counted where they entered, not as the queries rows say: an input the
        # pipeline lost lowers the outputs only, and the run fails to reconcile (exit 1)
        threshold=opts.threshold, top_k=opts.top_k, n_inputs=listed + rematched,
        n_rematched=None if opts.no_rematch else rematched,
        n_matched=tally["matched"], n_no_match=tally["no_match"], n_failed=tally["failed"],
        n_match_rows=counts["matches"], n_dead_letters=counts["dead_letter"])
    runs.write_run(opts.out, record, run_date)
    return partitions, record
