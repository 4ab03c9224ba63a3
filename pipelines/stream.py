"""``framematch stream``: images matched within seconds of landing, against a growing index.

    framematch stream --index DIR --images DIR_OR_PREFIX --out DIR [--window_s 5]
                      [--stop_after SECONDS] [--refresh_s 10] [--subscription SUB]
    framematch stream --out DIR --compact [--run_date YYYY-MM-DD]

The batch match job with three things changed: the source (a directory or ``gs://`` prefix
watched with ``MatchContinuously``, or GCS notifications from Pub/Sub), fixed windows of
``--window_s`` before the match transforms (their re-post grouping is per window), and a sink
that writes one file per window and table (``transforms/stream/window_sink.py``) into the batch
job's layout, ``OUT/<table>/run_date=<window's date>/run_id=<stream run>/``.

It runs on Beam's Prism runner (a local binary, ``make setup`` builds it into
``.cache/bin/prism``), which streams: windows are written while the job runs. With no
``--runner`` it uses Prism; ``--runner`` DataflowRunner or FlinkRunner run it unchanged.
The manifest is re-read every ``--refresh_s``: new shards are searched (and loaded in the
background) as soon as a nightly run commits them (``transforms.match.search_stage``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    PrismRunnerOptions,
    StandardOptions,
)
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from pipelines.match import MatchImages, MatchOptions
from pipelines.options import (
    CommonOptions,
    configure_logging,
    new_run_id,
    refuse_unknown_flags,
)
from schemas.records import MATCH_TABLES
from transforms.index.store import load_manifest, require_compatible
from transforms.io import gcs_auth, storage
from transforms.io.listing import ReadSidecar
from transforms.stream import window_sink
from transforms.stream.arrival import StampArrival
from transforms.stream.notifications import FinalizedObjects

LOG = logging.getLogger(__name__)
PRISM_BUILT = Path(__file__).resolve().parents[1] / ".cache" / "bin" / "prism"
STOP_GRACE_S = 30.0  # after --stop_after, time for the last windows to drain before cancel
CANCEL_WAIT_S = 30.0  # how long a cancelled job may take to reach a terminal state


class StreamOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--subscription", default=None,
                            help="projects/P/subscriptions/S of GCS notifications (instead of "
                                 "watching --images).")
        parser.add_argument("--window_s", type=float, default=5.0,
                            help="Fixed window length: rows of a window land in one file.")
        parser.add_argument("--poll_s", type=float, default=1.0,
                            help="How often the watched directory or prefix is listed.")
        parser.add_argument("--refresh_s", type=float, default=10.0,
                            help="How often the index manifest is re-read for a newer index.")
        parser.add_argument("--dedup_ttl_s", type=float, default=24 * 3600.0,
                            help="How long a notified (object, generation) is remembered.")
        parser.add_argument("--stop_after", "--stop-after", type=float, default=None,
                            help="Stop watching after this many seconds, drain and exit.")
        parser.add_argument("--compact", action="store_true",
                            help="Do not stream: merge the small files of --out's "
                                 "partitions (of --run_date, default all) and exit.")


def prism_binary() -> str | None:
    """The Prism binary ``make setup`` built, else one on PATH (never a download)."""
    if PRISM_BUILT.is_file() and os.access(PRISM_BUILT, os.X_OK):
        return str(PRISM_BUILT)
    return shutil.which("prism")


def streaming_options(argv: list[str]) -> PipelineOptions:
    """Options with ``--streaming`` on and, unless another runner is named, local Prism."""
    refuse_unknown_flags("stream", argv, [CommonOptions, MatchOptions, StreamOptions])
    gcs_auth.use_anonymous_credentials_for_emulator()  # a no-op off an emulator
    options = PipelineOptions(argv)
    options.view_as(StandardOptions).streaming = True
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "PrismRunner"
    prism = options.view_as(PrismRunnerOptions)
    if "Prism" in str(standard.runner) and not prism.prism_location:
        prism.prism_location = prism_binary()
        if prism.prism_location is None:
            raise SystemExit("framematch stream: no Prism binary (run `make setup`, which builds "
                             f"it into {PRISM_BUILT}, or pass --prism_location)")
    return options


def watched_uris(p: beam.Pipeline, images: str, stream: StreamOptions,
                 stop: Timestamp) -> beam.PCollection:
    """New image URIs, each once, timestamped by when they arrived (``StampArrival``).

    A watched directory is listed every ``poll_s`` by ``MatchContinuously``, deduplicated by
    (path, mtime): a file is matched once, and again if it is rewritten. Its dedup state
    holds every path it has seen, so it grows with the files ever dropped there; Beam's
    ``timestamp_cursor`` would bound it, but then skips any file whose mtime is older than
    the newest seen (a ``mv`` of an old file) with no trace, and stamps files with their
    mtime, which can be behind the watermark. For large volumes use ``--subscription``:
    notifications carry (name, generation) and are deduplicated by ``FinalizedObjects``,
    whose state lasts ``--dedup_ttl_s``.
    """
    if stream.subscription:
        from apache_beam.io.gcp.pubsub import ReadFromPubSub

        uris = (p
                | "Notifications" >> ReadFromPubSub(subscription=stream.subscription,
                                                    with_attributes=True)
                | "NewObjects" >> FinalizedObjects(stream.dedup_ttl_s))
    else:
        watched = [
            p | f"Watch{i}" >> fileio.MatchContinuously(
                pattern, interval=stream.poll_s, stop_timestamp=stop,
                match_updated_files=True)
            for i, pattern in enumerate(storage.expand_source(images))
        ]
        uris = (watched | "AllWatched" >> beam.Flatten()
                | "Paths" >> beam.Map(lambda m: m.path))
    return uris | "ArrivalTime" >> beam.ParDo(StampArrival())


def own_stop_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM only ask the stream to stop (``run_until_stopped`` does it).

    Why not Beam's handler: starting a local job server installs one (``StopOnExitJobServer``)
    that stops Prism from inside the signal handler and then raises ``KeyboardInterrupt``
    wherever the main thread happens to be. A signal that lands while the job is ending by
    itself (``--stop_after``), during the compaction after it, or while the interpreter is
    exiting then either escapes as ``KeyboardInterrupt`` (exit status -2 or 1), or deadlocks:
    the handler re-enters ``StopOnExitJobServer.stop`` while the exit-time call to it holds
    its lock (seen with py-spy: the process hangs for ever). A handler that only sets an
    event has no such window. A second signal still interrupts, for an operator in a hurry.
    """
    def request_stop(signum, frame) -> None:
        if stop.is_set():
            signal.default_int_handler(signum, frame)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)


def run_until_stopped(result, stop: threading.Event, timeout_s: float | None) -> str:
    """Wait for the job to end by itself, or until ``stop`` is set or ``timeout_s`` passed,
    then cancel it through the job service (while Prism still runs) and wait for that.
    Returns what ended it, for the closing line; never raises for a requested stop."""
    ended = threading.Event()
    outcome: dict[str, object] = {}

    def wait() -> None:
        try:
            outcome["state"] = result.wait_until_finish()
        except Exception as error:  # noqa: BLE001 - a cancelled job "fails" in Beam's terms
            outcome["error"] = error
        finally:
            ended.set()

    threading.Thread(target=wait, name="wait_until_finish", daemon=True).start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not ended.wait(0.5):
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            break
    if not ended.is_set():
        why = "interrupted" if stop.is_set() else "stopped after --stop_after"
        LOG.warning("%s: cancelling the stream (windows not yet written are not written)", why)
        with contextlib.suppress(Exception):  # Prism may be gone already (Ctrl-C hit it too)
            result.cancel()
        ended.wait(CANCEL_WAIT_S)
        return why
    if "error" in outcome and not stop.is_set():
        raise outcome["error"]  # the job failed by itself: a real failure
    return str(outcome.get("state", "interrupted"))


def compact_all(out: str, run_date: str = "*", run_id: str = "*") -> dict[str, int]:
    merged = {}
    for table, schema in MATCH_TABLES.items():
        merged |= window_sink.compact(out, table, schema, run_date, run_id)
    return merged


def run(argv: list[str] | None = None) -> int:
    options = streaming_options(list(sys.argv[1:] if argv is None else argv))
    opts = options.view_as(MatchOptions)
    common = options.view_as(CommonOptions)
    stream = options.view_as(StreamOptions)
    configure_logging(common.verbose)
    if stream.compact:
        if not opts.out:
            raise SystemExit("framematch stream --compact: --out is required")
        merged = compact_all(opts.out, opts.run_date or "*")
        print(f"compacted {sum(merged.values())} files into {len(merged)} in {opts.out}")
        return 0
    if not common.index or not opts.out or not (opts.images or stream.subscription):
        raise SystemExit("framematch stream: --index, --out and --images (or --subscription) "
                         "are required")
    manifest = load_manifest(common.index)
    if manifest is None:
        raise SystemExit(f"framematch stream: no index at {common.index} (no manifest.json)")
    require_compatible(manifest, common.index)
    run_id = opts.run_id or new_run_id()
    stop = (MAX_TIMESTAMP if stream.stop_after is None
            else Timestamp.now() + stream.stop_after)
    p = beam.Pipeline(options=options)
    sidecar = p | "PostMetadata" >> ReadSidecar(common.meta) if common.meta else None
    tables = (
        watched_uris(p, opts.images, stream, stop)
        | "Windows" >> beam.WindowInto(FixedWindows(stream.window_s))
        | "MatchImages" >> MatchImages(common.index, manifest, opts, run_id, sidecar,
                                       refresh_s=stream.refresh_s)
    )
    for name, records in tables.items():
        _ = records | f"Write_{name}" >> window_sink.WriteWindowedTable(
            opts.out, name, MATCH_TABLES[name], run_id)
    stop_requested = threading.Event()
    own_stop_signals(stop_requested)  # before the job server starts: nothing is half-set
    result = p.run()
    own_stop_signals(stop_requested)  # again: starting Prism installed Beam's SIGINT handler
    print(f"stream run {run_id}: watching {opts.images or stream.subscription} -> {opts.out}",
          flush=True)
    grace = None if stream.stop_after is None else stream.stop_after + STOP_GRACE_S
    state = run_until_stopped(result, stop_requested, grace)
    merged = compact_all(opts.out, run_id=run_id)
    print(f"stream run {run_id}: {state}; compacted {sum(merged.values())} window "
          f"files into {len(merged)}", flush=True)
    return 0
