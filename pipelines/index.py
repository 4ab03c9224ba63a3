"""``framematch index``: a video archive becomes a frame-hash index in Parquet.

    framematch index --archive SRC --index DIR [--hashers pdq,phash,dhash] [--meta SIDECAR]

Each run is one ingest batch: it lists the archive, indexes only new or replaced files,
writes ``videos``, ``frames`` and ``dead_letter`` partitions under ``DIR/<table>/batch=<id>/``
and, last, commits the manifest version that makes the batch live. A run indexes what it
lists and nothing else: videos it does not list stay live, unless ``--delete_missing`` asks
it to tombstone those under the patterns it listed that are gone, and even then not more
than ``--max_delete_fraction`` of the live videos (the run is refused, nothing changed). A
pattern that lists nothing is an error, not an empty archive.
"""

from __future__ import annotations

import datetime
import logging
import sys

import apache_beam as beam
from apache_beam.io.parquetio import ReadAllFromParquet
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipelines.metrics import print_metrics
from pipelines.options import CommonOptions, beam_options, configure_logging, is_dry_run, new_run_id
from schemas.manifest import Manifest, partition_dir
from schemas.records import DEAD_LETTER, INDEX_TABLES, SEGMENTS, VIDEOS
from schemas.runs import RunRecord
from transforms.hashing.pruning import DEFAULT_PRUNE_D
from transforms.index import batches
from transforms.index.changes import DetectChanges, ListedScope
from transforms.index.finalise import AttachVideoMetadata, FinaliseVideo
from transforms.index.manifest_log import CommitConflict
from transforms.index.segments import DecodeSegment, ProbeVideo, plan_segments
from transforms.io import parquet, storage
from transforms.io.listing import EmptyListing, ListFiles, ReadSidecar, require_files
from transforms.media.decode import MAX_MEMORY_MB
from transforms.results import runs

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
        parser.add_argument("--shard_rows", type=int, default=batches.DEFAULT_SHARD_ROWS,
                            help="At most this many key rows per shard, the unit a match "
                                 "worker loads and searches (recorded in the manifest).")
        parser.add_argument("--delete_missing", action="store_true",
                            help="Tombstone live videos under the listed patterns (a "
                                 "directory, prefix or glob of --archive) that are gone. "
                                 "Without it a run never removes anything.")
        parser.add_argument("--max_delete_fraction", type=float, default=0.10,
                            help="With --delete_missing, refuse the run (exit 1, nothing "
                                 "changed) if it would tombstone more than this fraction of "
                                 "the live videos (1 to allow any).")
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
    """Listing + live index → this batch's videos, segments and dead letters, as a dict.

    The key rows and pictures themselves are written by the decode step, as it makes them,
    into ``frames`` and ``references`` of the batch (``transforms.index.segments``).
    """

    def __init__(self, index_dir: str, patterns: list[str], known_globs: list[str],
                 opts: IndexOptions, hashers: list[str], batch_id: str,
                 sidecar: beam.PCollection | None = None):
        super().__init__()
        self.index_dir = index_dir
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
                       | "ListArchive" >> ListFiles(self.patterns, allow_empty=False)
                       | "KeyByUri" >> beam.Map(lambda m: (m.path, m)),
             "known": pbegin | "KnownVideos" >> KnownVideos(self.known_globs)}
            | "JoinListingWithIndex" >> beam.CoGroupByKey()
            | "DetectChanges" >> beam.ParDo(DetectChanges(
                self.batch_id, self.batch_id,
                ListedScope(self.patterns) if o.delete_missing else None))
            .with_outputs(DEAD_LETTER, DetectChanges.TOMBSTONES, main="new")
        )
        probed = (
            changes.new
            | "Probe" >> beam.ParDo(ProbeVideo(self.batch_id, self.batch_id,
                                               o.probe_timeout, o.decode_memory_mb))
            .with_outputs(DEAD_LETTER, main="videos")
        )
        # Local videos' segments spread over the workers; a remote video's segments stay
        # on the worker that downloaded it for the probe (one download per video).
        local, remote = probed.videos | "LocalOrRemote" >> beam.Partition(
            lambda video, _: int(storage.is_remote(video.uri)), 2)
        decode_segment = DecodeSegment(self.index_dir, self.batch_id, self.hashers, o.prune_d,
                                       o.decode_timeout, not o.no_references,
                                       o.decode_memory_mb)
        segments = (
            (local
             | "PlanLocalSegments" >> beam.FlatMap(plan_segments, o.segment_seconds)
             | "SpreadSegments" >> beam.Reshuffle()
             | "DecodeAndHash" >> beam.ParDo(decode_segment),
             remote
             | "PlanRemoteSegments" >> beam.FlatMap(plan_segments, o.segment_seconds)
             | "DecodeAndHashDownloaded" >> beam.ParDo(decode_segment))
            | "AllSegments" >> beam.Flatten()
        )
        finalised = (
            {"video": probed.videos | "KeyById" >> beam.Map(lambda v: (v.video_id, v)),
             "segments": segments}
            | "GroupSegments" >> beam.CoGroupByKey()
            | "Finalise" >> beam.ParDo(FinaliseVideo(self.batch_id))
            .with_outputs(DEAD_LETTER, SEGMENTS, main="videos")
        )
        videos = finalised.videos
        if self.sidecar is not None:  # the videos' metadata, by URI, from a side input
            videos = videos | "VideoMetadata" >> beam.ParDo(
                AttachVideoMetadata(), beam.pvalue.AsMultiMap(self.sidecar))
        return {
            VIDEOS: (videos, changes[DetectChanges.TOMBSTONES])
            | "VideosAndTombstones" >> beam.Flatten(),
            SEGMENTS: finalised[SEGMENTS],
            DEAD_LETTER: (changes[DEAD_LETTER], probed[DEAD_LETTER], finalised[DEAD_LETTER])
            | "AllDeadLetters" >> beam.Flatten(),
        }


def threads_not_processes(options: PipelineOptions) -> None:
    """``--workers N`` runs the embedded runner's N workers as threads of this process.

    Decoding happens in FFmpeg processes and the hashing in numpy and OpenCV calls that
    release the GIL, so threads run the index's segments in parallel as well as processes
    do, without Beam's multi-process start-up: each SDK worker process imports Beam and the
    job's modules and is fed over gRPC, which cost 9-10 s per run here (``bench.bench_index``
    measures both).
    """
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing" and (direct.direct_num_workers or 1) > 1:
        direct.direct_running_mode = "multi_threading"


def refuse_mass_deletion(index_dir: str, batch_id: str, metrics: dict[str, int],
                         max_fraction: float) -> None:
    """Refuse (exit 1, the batch discarded, the index unchanged) a run that would tombstone
    more than ``max_fraction`` of the live videos, naming what it would have removed."""
    deleted, live = metrics.get("videos_deleted", 0), metrics.get("videos_live", 0)
    if not deleted or deleted <= max_fraction * live:
        return
    videos = parquet.read_table(partition_dir(index_dir, VIDEOS, batch_id), INDEX_TABLES[VIDEOS])
    rows = videos.to_pylist()
    kept = {r["uri"] for r in rows if not r["deleted"]}
    gone = sorted(r["uri"] for r in rows if r["deleted"] and r["uri"] not in kept)
    batches.discard_batch(index_dir, batch_id)
    shown = "\n  ".join(gone[:20]) + (f"\n  ... and {len(gone) - 20} more" if len(gone) > 20
                                      else "")
    raise SystemExit(
        f"framematch index: refused: --delete_missing would tombstone {deleted} of {live} "
        f"live videos ({deleted / live:.0%} > --max_delete_fraction {max_fraction:g}); "
        f"nothing changed. It would have removed:\n  {shown}\nIf they are really gone, "
        f"rerun with --max_delete_fraction {min(1.0, deleted / live):.2f} or more.")


def run(argv: list[str] | None = None) -> Manifest:
    """Index one batch; returns the manifest that made it live."""
    return execute(argv)[0]


def execute(argv: list[str] | None = None) -> tuple[Manifest, RunRecord | None]:
    """``run``, also returning the run's record (what ``framematch`` judges the outcome by)."""
    options = beam_options(list(sys.argv[1:] if argv is None else argv), "index", [IndexOptions])
    threads_not_processes(options)
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

    settings = batches.index_settings(KEY_HASHER, hashers, opts.prune_d, opts.shard_rows)
    try:
        manifest = batches.open_manifest(common.index, settings)
    except ValueError as error:  # another preprocessing version, or other settings
        raise SystemExit(f"framematch index: {error}") from error

    patterns = storage.expand_source(opts.archive)
    try:
        require_files(patterns)
    except EmptyListing as error:
        raise SystemExit(f"framematch index: --archive {opts.archive}: {error}; nothing "
                         f"was indexed (an empty listing is not an empty archive)") from error
    batch_id = new_run_id()
    known_globs = [f"{partition_dir(common.index, 'videos', p.batch_id)}/*.parquet"
                   for p in manifest.partitions]
    started = datetime.datetime.now(datetime.UTC)
    with beam.Pipeline(options=options) as p:
        sidecar = p | "ReadVideoMetadata" >> ReadSidecar(common.meta) if common.meta else None
        tables = p | "IndexArchive" >> IndexArchive(
            common.index, patterns, known_globs, opts, hashers,
            batch_id, sidecar)
        for name, records in tables.items():
            _ = records | f"Write_{name}" >> parquet.WriteTable(
                partition_dir(common.index, name, batch_id), INDEX_TABLES[name])
    if is_dry_run(options):
        print("framematch index: dry run: the job was built, not run")
        return manifest, None
    metrics = print_metrics(p.result, "index")

    refuse_mass_deletion(common.index, batch_id, metrics, opts.max_delete_fraction)
    try:
        manifest = batches.commit_batch(common.index, manifest, batch_id, started)
    except CommitConflict as error:
        batches.discard_batch(common.index, batch_id)
        raise SystemExit(f"framematch index: {error}; nothing was committed: run it again "
                         f"(what the other run indexed is not read again)") from error
    partition = manifest.partitions[-1]
    record = runs.run_record(
        "index", batch_id, started, options, argv, common.index, manifest,
        n_inputs=metrics.get("files_listed", 0), n_unchanged=metrics.get("videos_unchanged", 0),
        n_videos=partition.videos, n_tombstones=partition.tombstones,
        n_frame_rows=partition.rows, n_dead_letters=partition.dead_letters)
    runs.write_run(common.index, record)
    print(f"index {common.index}: batch {batch_id}: {partition.videos} videos indexed, "
          f"{partition.tombstones} tombstoned, {partition.rows} frame rows, "
          f"{partition.dead_letters} dead letters")
    return manifest, record
