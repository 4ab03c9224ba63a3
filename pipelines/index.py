"""``framematch index``: a video archive becomes a frame-hash index in Parquet.

    framematch index --archive SRC --index DIR [--hashers pdq,phash,dhash] [--meta SIDECAR]

Each run is one ingest batch: it lists the archive, indexes only new or replaced files,
tombstones deleted ones, writes ``videos``, ``frames`` and ``dead_letter`` partitions under
``DIR/<table>/batch=<id>/`` and, last, the manifest that makes the batch live.
"""

from __future__ import annotations

import datetime
import logging
import sys

import apache_beam as beam
from apache_beam.io.parquetio import ReadAllFromParquet
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import CommonOptions, beam_options, configure_logging, is_dry_run, new_run_id
from pipelines.report import print_metrics
from schemas.manifest import Manifest, Partition, partition_dir
from schemas.records import (
    DEAD_LETTER_SCHEMA,
    FRAMES_SCHEMA,
    REFERENCES_SCHEMA,
    VIDEOS_SCHEMA,
)
from schemas.runs import RunRecord
from transforms import io, runs, sinks
from transforms.decode import MAX_MEMORY_MB
from transforms.index_store import load_manifest, manifest_uri, require_compatible
from transforms.listing import ListFiles
from transforms.preprocess import PREPROCESS_VERSION, REGIONS
from transforms.sampling import DEFAULT_PRUNE_D
from transforms.video_index import (
    DEAD,
    FRAMES,
    REFERENCES,
    DecodeSegment,
    DetectChanges,
    FinaliseVideo,
    ProbeVideo,
    plan_segments,
)

LOG = logging.getLogger(__name__)
KEY_HASHER = "phash256"  # the search key: what pruning and the match job's radius are about
STORED_HASHERS = ("pdq", "phash", "dhash")


class IndexOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--archive", help="Directory, glob, list file or gs:// prefix.")
        parser.add_argument("--hashers", default="pdq,phash,dhash",
                            help="Hashers stored beside the search key on whole-frame rows "
                                 "(pdq, phash, dhash; empty for none).")
        parser.add_argument("--segment_seconds", type=float, default=60.0,
                            help="Decode long videos in segments of this length, in parallel.")
        parser.add_argument("--prune_d", type=int, default=DEFAULT_PRUNE_D,
                            help="Keep a frame when its key hash moved more than this many bits.")
        parser.add_argument("--decode_timeout", type=float, default=600.0,
                            help="Seconds one segment may take to decode before it is failed.")
        parser.add_argument("--probe_timeout", type=float, default=30.0,
                            help="Seconds ffprobe may take on one file.")
        parser.add_argument("--decode_memory_mb", type=int, default=MAX_MEMORY_MB,
                            help="Address-space limit (MB) of each ffprobe/FFmpeg process; a "
                                 "file that needs more is dead-lettered (0: no limit).")
        parser.add_argument("--no_references", action="store_true",
                            help="Do not store the kept frames' pictures (grey JPEG, 320 px) "
                                 "that match --verify re-checks; saves ~12 kB per kept frame.")


class KnownVideos(beam.PTransform):
    """The videos rows of the live partitions, keyed by URI (nothing on a first run)."""

    def __init__(self, globs: list[str]):
        super().__init__()
        self.globs = globs

    def expand(self, pbegin):
        return (
            pbegin
            | "LivePartitions" >> beam.Create(self.globs)
            | "Read" >> ReadAllFromParquet()
            | "KeyByUri" >> beam.Map(lambda row: (row["uri"], row))
        )


class IndexArchive(beam.PTransform):
    """Listing + live index → this batch's videos, frames and dead letters, as a dict."""

    def __init__(self, patterns: list[str], known_globs: list[str], opts: IndexOptions,
                 hashers: list[str], batch_id: str, sidecar: dict[str, dict[str, str]]):
        super().__init__()
        self.hashers = hashers
        self.patterns = patterns
        self.known_globs = known_globs
        self.opts = opts
        self.batch_id = batch_id
        self.sidecar = sidecar

    def expand(self, pbegin):
        o = self.opts
        changes = (
            {"listed": pbegin
                       | "ListArchive" >> ListFiles(self.patterns)
                       | "KeyByUri" >> beam.Map(lambda m: (m.path, m)),
             "known": pbegin | "KnownVideos" >> KnownVideos(self.known_globs)}
            | "JoinListingWithIndex" >> beam.CoGroupByKey()
            | "DetectChanges" >> beam.ParDo(DetectChanges(self.batch_id, self.batch_id))
            .with_outputs(DEAD, DetectChanges.TOMBSTONES, main="new")
        )
        probed = (
            changes.new
            | "Probe" >> beam.ParDo(ProbeVideo(self.batch_id, self.batch_id, self.sidecar,
                                               o.probe_timeout, o.decode_memory_mb))
            .with_outputs(DEAD, main="videos")
        )
        segments = (
            probed.videos
            | "PlanSegments" >> beam.FlatMap(plan_segments, o.segment_seconds)
            | "SpreadSegments" >> beam.Reshuffle()
            | "DecodeAndHash" >> beam.ParDo(DecodeSegment(self.hashers, o.prune_d,
                                                          o.decode_timeout,
                                                          not o.no_references,
                                                          o.decode_memory_mb))
        )
        finalised = (
            {"video": probed.videos | "KeyById" >> beam.Map(lambda v: (v.video_id, v)),
             "segments": segments}
            | "GroupSegments" >> beam.CoGroupByKey()
            | "Finalise" >> beam.ParDo(FinaliseVideo(self.batch_id))
            .with_outputs(DEAD, FRAMES, REFERENCES, main="videos")
        )
        return {
            "videos": (finalised.videos, changes[DetectChanges.TOMBSTONES])
            | "VideosAndTombstones" >> beam.Flatten(),
            "frames": finalised[FRAMES],
            "references": finalised[REFERENCES],
            "dead_letter": (changes[DEAD], probed[DEAD], finalised[DEAD])
            | "AllDeadLetters" >> beam.Flatten(),
        }


TABLE_SCHEMAS = {"videos": VIDEOS_SCHEMA, "frames": FRAMES_SCHEMA,
                 "references": REFERENCES_SCHEMA, "dead_letter": DEAD_LETTER_SCHEMA}


def run(argv: list[str] | None = None) -> Manifest:
    """Index one batch; returns the manifest that made it live."""
    return execute(argv)[0]


def execute(argv: list[str] | None = None) -> tuple[Manifest, RunRecord | None]:
    """``run``, also returning the run's record (what ``framematch`` judges the outcome by)."""
    options = beam_options(list(sys.argv[1:] if argv is None else argv))
    opts = options.view_as(IndexOptions)
    common = options.view_as(CommonOptions)
    configure_logging(common.verbose)
    if not opts.archive or not common.index:
        raise SystemExit("framematch index: --archive and --index are required")
    hashers = [h.strip() for h in opts.hashers.split(",") if h.strip()]
    unknown = [h for h in hashers if h not in STORED_HASHERS]
    if unknown:
        raise SystemExit(f"framematch index: unknown hashers {unknown}; "
                         f"known: {', '.join(STORED_HASHERS)}")

    manifest = load_manifest(common.index)
    settings = dict(preprocess_version=PREPROCESS_VERSION, hashers=hashers,
                    key_hasher=KEY_HASHER, prune_d=opts.prune_d,
                    regions=[name for name, _ in REGIONS.values()])
    if manifest is None:
        manifest = Manifest(**settings)
    else:
        require_compatible(manifest, common.index)
        for key, value in settings.items():
            if getattr(manifest, key) != value:
                raise SystemExit(f"framematch index: {common.index} was built with {key}="
                                 f"{getattr(manifest, key)!r}, not {value!r}; index into a "
                                 f"new directory to change it")

    batch_id = new_run_id()
    known_globs = [f"{partition_dir(common.index, 'videos', p.batch_id)}/*.parquet"
                   for p in manifest.partitions]
    sidecar = io.read_sidecar(common.meta, "uri")
    started = datetime.datetime.now(datetime.UTC)
    with beam.Pipeline(options=options) as p:
        tables = p | "IndexArchive" >> IndexArchive(
            io.expand_source(opts.archive), known_globs, opts, hashers, batch_id, sidecar)
        for name, records in tables.items():
            _ = records | f"Write_{name}" >> sinks.WriteTable(
                partition_dir(common.index, name, batch_id), TABLE_SCHEMAS[name])
    if is_dry_run(options):
        print("framematch index: dry run: the job was built, not run")
        return manifest, None
    metrics = print_metrics(p.result, "index")

    counts = {name: sinks.count_rows(partition_dir(common.index, name, batch_id))
              for name in TABLE_SCHEMAS}
    tombstones = sinks.read_table(partition_dir(common.index, "videos", batch_id),
                                  VIDEOS_SCHEMA).column("deleted").to_pylist().count(True)
    manifest.partitions.append(Partition(
        batch_id=batch_id, created=started.isoformat(), videos=counts["videos"] - tombstones,
        rows=counts["frames"], tombstones=tombstones, dead_letters=counts["dead_letter"]))
    io.write_text_atomic(manifest_uri(common.index), manifest.to_json())
    record = runs.run_record(
        "index", batch_id, started, options, argv, common.index, manifest,
        n_inputs=metrics.get("files_listed", 0), n_unchanged=metrics.get("videos_unchanged", 0),
        n_videos=counts["videos"] - tombstones, n_tombstones=tombstones,
        n_frame_rows=counts["frames"], n_dead_letters=counts["dead_letter"])
    runs.write_run(common.index, record)
    print(f"index {common.index}: batch {batch_id}: {counts['videos'] - tombstones} videos "
          f"indexed, {tombstones} tombstoned, {counts['frames']} frame rows, "
          f"{counts['dead_letter']} dead letters")
    return manifest, record
