"""The streaming job: notification filtering and dedup, window files, compaction, and the
whole ``framematch stream`` on the Prism runner with files dropped while it runs.

The transform tests use ``TestStream`` on the bundle-based DirectRunner (the runner where it
works in Beam 2.77) with explicit timestamps; the end-to-end test runs the real command.
"""

from __future__ import annotations

import collections
import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import duckdb
import pyarrow.dataset as ds
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from evaluation.edits import grab_frame
from evaluation.footage import distractor_photos, load_truth
from pipelines import index, stream
from schemas.records import MATCH_TABLES, DeadLetter
from tests.conftest import EMBEDDED
from transforms.stream import window_sink
from transforms.stream.arrival import StampArrival
from transforms.stream.notifications import FinalizedObjects, finalized_object

STREAMING = ["--runner=BundleBasedDirectRunner", "--streaming"]
T0 = 1_795_000_000  # an arbitrary epoch second, on a 5 s window boundary


def notification(name: str, generation: str, event: str = "OBJECT_FINALIZE") -> PubsubMessage:
    return PubsubMessage(b"{}", {"bucketId": "posts", "objectId": name,
                                 "objectGeneration": generation, "eventType": event,
                                 "payloadFormat": "JSON_API_V1"})


def test_finalized_object_accepts_finalize_only() -> None:
    assert finalized_object(notification("a/b.jpg", "7").attributes) == ("gs://posts/a/b.jpg",
                                                                        "7")
    for event in ("OBJECT_METADATA_UPDATE", "OBJECT_DELETE", "OBJECT_ARCHIVE"):
        assert finalized_object(notification("a/b.jpg", "7", event).attributes) is None
    assert finalized_object({"eventType": "OBJECT_FINALIZE", "bucketId": "posts"}) is None


def test_notifications_deduplicated_per_generation_and_forgotten_after_ttl() -> None:
    ttl = 60
    events = (
        test_stream.TestStream()
        .add_elements([
            TimestampedValue(notification("x.jpg", "1"), T0),
            TimestampedValue(notification("x.jpg", "1"), T0 + 1),  # redelivery
            TimestampedValue(notification("x.jpg", "1", "OBJECT_METADATA_UPDATE"), T0 + 2),
            TimestampedValue(notification("x.jpg", "2"), T0 + 3),  # overwritten: new generation
            TimestampedValue(notification("y.jpg", "1", "OBJECT_DELETE"), T0 + 4),
        ])
        .advance_watermark_to(T0 + 30)
        .add_elements([TimestampedValue(notification("x.jpg", "2"), T0 + 30)])  # within ttl
        .advance_watermark_to(T0 + ttl + 10)  # x.jpg generation 1 is forgotten
        .add_elements([TimestampedValue(notification("x.jpg", "1"), T0 + ttl + 10)])
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as p:
        uris = p | events | FinalizedObjects(ttl_s=ttl)
        assert_that(uris, equal_to(["gs://posts/x.jpg"] * 3))


def read(out: Path, table: str):
    return ds.dataset(out / table, format="parquet", partitioning="hive").to_table()


def test_window_files_one_per_window_and_compaction(tmp_path: Path) -> None:
    out = tmp_path / "out"
    letters = [DeadLetter(f"img{i}.jpg", "read", "boom", "r1") for i in range(5)]
    times = [T0 + 0.5, T0 + 4.9, T0 + 5.0, T0 + 9.0, T0 + 12.0]  # windows 0, 0, 5, 5, 10
    events = (test_stream.TestStream()
              .add_elements([TimestampedValue(r, t) for r, t in zip(letters, times, strict=True)])
              .advance_watermark_to_infinity())
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as p:
        _ = (p | events | beam.WindowInto(FixedWindows(5))
             | window_sink.WriteWindowedTable(str(out), "dead_letter",
                                              MATCH_TABLES["dead_letter"], "r1"))
    files = sorted(out.glob("dead_letter/run_date=*/run_id=r1/*"))
    # one file per window pane and writer; a record's writer is fixed by its URI
    expected = collections.Counter(
        (datetime.datetime.fromtimestamp(T0 + (t - T0) // 5 * 5, datetime.UTC),
         window_sink.writer_of(r, window_sink.WRITERS_PER_WINDOW))
        for r, t in zip(letters, times, strict=True))
    names = {f"part-{start:%Y%m%dT%H%M%S}.000Z-p0-w{writer}.parquet": n
             for (start, writer), n in expected.items()}
    assert {f.name: ds.dataset(f).count_rows() for f in files} == names
    assert files[0].parent.parent.name == f"run_date={min(expected)[0].date()}"

    (files[0].parent / ".part-in-progress.parquet.1234.tmp").write_bytes(b"half a file")
    merged = window_sink.compact(str(out), "dead_letter", MATCH_TABLES["dead_letter"])
    assert list(merged.values()) == [len(files)]
    assert [f.name for f in files[0].parent.glob("*.parquet")] == [Path(next(iter(merged))).name]
    assert sorted(read(out, "dead_letter").column("uri").to_pylist()) == [r.uri for r in letters]
    glob = f"{out}/dead_letter/**/*.parquet"
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true) "
                      "where run_id = 'r1'").fetchall() == [(5,)]
    assert window_sink.compact(str(out), "dead_letter", MATCH_TABLES["dead_letter"]) == {}


def window_files(out: Path, run_id: str, n: int) -> list[str]:
    """``n`` dead letters written by the streaming sink into 5 s windows: several files."""
    letters = [DeadLetter(f"img{i}.jpg", "read", "boom", run_id) for i in range(n)]
    events = (test_stream.TestStream()
              .add_elements([TimestampedValue(r, T0 + i) for i, r in enumerate(letters)])
              .advance_watermark_to_infinity())
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as p:
        _ = (p | events | beam.WindowInto(FixedWindows(5))
             | window_sink.WriteWindowedTable(str(out), "dead_letter",
                                              MATCH_TABLES["dead_letter"], run_id))
    return [r.uri for r in letters]


@pytest.mark.parametrize("step", ["mid-write", "before-rename", "after-rename"])
def test_compaction_killed_at_any_step_leaves_each_row_once(tmp_path: Path, step: str) -> None:
    out = tmp_path / "out"
    uris = window_files(out, "r1", 12)
    assert len(list(out.glob("dead_letter/*/*/*.parquet"))) > 2
    killed = subprocess.run([sys.executable, "-m", "tests.compaction_killer", str(out), step],
                            cwd=Path(__file__).resolve().parent.parent)
    assert killed.returncode == -signal.SIGKILL
    rows = sorted(read(out, "dead_letter").column("uri").to_pylist())
    assert set(rows) == set(uris)  # nothing lost at any step
    if step != "after-rename":
        assert rows == sorted(uris)  # nothing twice either, before the rename
    merged = window_sink.compact(str(out), "dead_letter", MATCH_TABLES["dead_letter"])
    assert sorted(read(out, "dead_letter").column("uri").to_pylist()) == sorted(uris)
    files = list((out / "dead_letter").rglob("*"))
    assert len([f for f in files if f.suffix == ".parquet"]) == 1, (merged, files)
    assert not [f for f in files if f.name.startswith(".")]  # no temporary file left
    assert window_sink.compact(str(out), "dead_letter", MATCH_TABLES["dead_letter"]) == {}


@pytest.mark.parametrize("stamped", [True, False])
def test_a_late_input_still_lands(tmp_path: Path, stamped: bool) -> None:
    """A file whose own time is far behind the watermark (moved in with an old mtime, a
    backlog): windowed on its own time a GroupByKey drops it without a trace; stamped
    with its arrival (what the stream job does) it lands in a window file."""
    out = tmp_path / "out"
    late = DeadLetter("old.jpg", "read", "boom", "r1")
    events = (test_stream.TestStream()
              .add_elements([TimestampedValue(DeadLetter("new.jpg", "read", "boom", "r1"),
                                              T0 + 1000)])
              .advance_watermark_to(T0 + 1000)
              .add_elements([TimestampedValue(late, T0)])  # 1000 s behind the watermark
              .advance_watermark_to_infinity())
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as p:
        letters = p | events
        if stamped:
            letters = letters | beam.ParDo(StampArrival())
        _ = (letters | beam.WindowInto(FixedWindows(5))
             | window_sink.WriteWindowedTable(str(out), "dead_letter",
                                              MATCH_TABLES["dead_letter"], "r1"))
    uris = set(read(out, "dead_letter").column("uri").to_pylist())
    assert uris == ({"new.jpg", "old.jpg"} if stamped else {"new.jpg"})  # the bug, shown


def save_grab(video: Path, ts: float, path: Path) -> None:
    """A screengrab lands the way uploads should: written beside, renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    grab_frame(video, ts).save(tmp, format="JPEG", quality=88)
    tmp.rename(path)


def wait_for(predicate, timeout: float, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the stream exited early"
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError("timed out waiting for streamed rows")


def still_times(video: Path, n: int) -> list[float]:
    """Mid-points of ``n`` non-degenerate shots: moments a screengrab must trace."""
    shots = [s for s in load_truth(video)["shots"] if not s["degenerate"]]
    return [(s["t_start"] + s["t_end"]) / 2 for s in shots[:n]]


def still_video(photo: Path, path: Path) -> Path:
    """A 4 s clip of one photo no archive video shows: the nightly run's new video."""
    subprocess.run(["ffmpeg", "-v", "error", "-loop", "1", "-i", str(photo), "-t", "4",
                    "-r", "10", "-vf", "scale=640:-2,format=yuv420p", "-c:v", "libx264",
                    str(path)], check=True)
    return path


@pytest.mark.streaming
def test_stream_end_to_end_on_prism(index_dir: Path, archive: list[Path], archive_list: Path,
                                    tmp_path: Path) -> None:
    prism = stream.prism_binary()
    if prism is None:
        pytest.skip(f"no Prism binary at {stream.PRISM_BUILT} or on PATH (make setup builds it)")
    index_copy = tmp_path / "index"  # the update below must not touch the session's index
    shutil.copytree(index_dir, index_copy)
    new_video = still_video(distractor_photos()[0], tmp_path / "nightly_new.mp4")
    grown = tmp_path / "archive.txt"
    grown.write_text(archive_list.read_text() + f"{new_video}\n")
    known = archive[0]
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "stream", "--index", str(index_copy),
         "--images", str(inbox), "--out", str(out), "--window_s", "2", "--refresh_s", "1",
         # the test ends the job with SIGINT; --stop_after is only a backstop, far enough
         # away that the job never ends by itself while the test still talks to it
         "--stop_after", "900", "--run_id", "e2e", f"--prism_location={prism}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_GCE_CHECK": "True"})
    try:
        grabs = {f"known{i}.jpg": ts for i, ts in enumerate(still_times(known, 2))}
        for name, ts in grabs.items():
            save_grab(known, ts, inbox / name)
        (inbox / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        save_grab(new_video, 2.0, inbox / "before.jpg")  # not in the index yet

        def statuses(n: int) -> dict[str, str] | None:
            # A window's directory appears with its first hidden temporary file, before any
            # file is renamed into place: a dataset of it has no columns yet.
            if not list((out / "queries").glob("*/*/*.parquet")):
                return None
            queries = read(out, "queries")
            names = [Path(u).name for u in queries.column("query_uri").to_pylist()]
            found = dict(zip(names, queries.column("status").to_pylist(), strict=True))
            return found if len(found) == n else None

        status = wait_for(lambda: statuses(len(grabs) + 2), 45, proc)
        assert proc.poll() is None  # read while the job runs
        assert status == {**dict.fromkeys(grabs, "matched"), "corrupt.jpg": "failed",
                          "before.jpg": "no_match"}
        assert read(out, "dead_letter").column("uri").to_pylist() == [str(inbox / "corrupt.jpg")]
        matches = read(out, "matches").to_pylist()
        for name, ts in grabs.items():
            best = next(m for m in matches if m["rank"] == 1 and m["query_uri"].endswith(name))
            assert Path(best["ref_uri"]).name == known.name
            assert best["ref_ts_start_s"] - 0.5 <= ts <= best["ref_ts_end_s"] + 0.5

        index.run(["--archive", str(grown), "--index", str(index_copy), *EMBEDDED])
        time.sleep(1.5)  # past --refresh_s, so the next query re-reads the manifest
        save_grab(new_video, 3.0, inbox / "after.jpg")

        def new_matched():  # the queries and matches files of a window land one by one
            if statuses(len(grabs) + 3) is None:
                return None
            rows = read(out, "matches").to_pylist()
            return [m for m in rows if m["query_uri"].endswith("after.jpg") and m["rank"] == 1]

        (best,) = wait_for(new_matched, 30, proc)
        assert Path(best["ref_uri"]).name == new_video.name
        assert best["ref_ts_start_s"] - 0.5 <= 3.0 <= best["ref_ts_end_s"] + 0.5
    finally:
        proc.send_signal(signal.SIGINT)
        log = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, log
    assert "compacted" in log
    assert read(out, "queries").num_rows == len(grabs) + 3


@pytest.mark.streaming
@pytest.mark.parametrize("after_s", [0.0, 1.5])
def test_stream_exits_0_on_sigint_while_it_shuts_down(index_dir: Path, tmp_path: Path,
                                                      after_s: float) -> None:
    """--stop_after ends the job by itself; a SIGINT sent as it says so (or a moment later)
    lands while it returns, stops Prism or exits. Beam's own SIGINT handler made that exit
    -2, or hang for ever (it re-entered ``StopOnExitJobServer.stop``), and Python's default
    action during shutdown exited -2; now every moment is a clean exit 0 (the moment only
    picks which window is hit; the assertion holds for all of them)."""
    prism = stream.prism_binary()
    if prism is None:
        pytest.skip(f"no Prism binary at {stream.PRISM_BUILT} or on PATH (make setup builds it)")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "stream", "--index", str(index_dir),
         "--images", str(inbox), "--out", str(tmp_path / "out"), "--window_s", "1",
         "--stop_after", "2", "--run_id", "stop", f"--prism_location={prism}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_GCE_CHECK": "True"})
    log = []
    for line in proc.stdout:
        log.append(line)
        if line.startswith("stream run stop: ") and "compacted" in line:
            time.sleep(after_s)
            proc.send_signal(signal.SIGINT)  # the job is done: this lands in its shutdown
            break
    log.append(proc.communicate(timeout=60)[0])
    assert proc.returncode == 0, "".join(log)
    assert any("stream run stop: DONE" in line for line in log), "".join(log)
