"""SIGKILL an index run and a match run part-way, at several points, and rerun them.

Each point is a file that appears on the way (a Beam temp shard, a renamed shard, the
manifest); the job, run as ``framematch`` in a subprocess, is killed the moment it shows.
After every kill no Parquet file a reader can glob is partial, an index shows only what its
manifest made live, and the rerun's rows are exactly an uninterrupted run's: none missing,
no duplicates.
"""

from __future__ import annotations

import glob
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from evaluation.edits import grab_frame
from pipelines import index, match
from pipelines.commands import check
from tests.conftest import EMBEDDED, live_index
from transforms.index.store import load_manifest

ROOT = Path(__file__).resolve().parent.parent
# (name, glob under the output that triggers the kill, seconds after start when no glob)
INDEX_POINTS = [
    ("mid-write", "**/beam-temp-*/*", None),
    ("final commit", "*/batch=*/part-*.parquet", None),
    ("after the manifest", "_manifests/*.json", None),
]
MATCH_POINTS = [
    ("early", None, 2.0),
    ("mid-write", "**/beam-temp-*/*", None),
    ("final commit", "*/run_date=*/run_id=*/part-*.parquet", None),
]


def kill_at(argv: list[str], out: Path, pattern: str | None, after_s: float | None) -> bool:
    """Run ``framematch argv`` and SIGKILL it when ``pattern`` matches under ``out`` (or after
    ``after_s``); returns whether it was killed rather than finished first."""
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *argv], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    began = time.monotonic()
    try:
        while process.poll() is None:
            due = (glob.glob(str(out / pattern), recursive=True) if pattern
                   else time.monotonic() - began >= after_s)
            if due:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
            assert time.monotonic() - began < 60, "the job neither finished nor got killed"
    finally:
        process.wait()
    return process.returncode == -signal.SIGKILL


def assert_no_partial_parquet(out: Path) -> None:
    """Every file a ``**/*.parquet`` reader would pick up is a whole Parquet file."""
    for path in glob.glob(str(out / "**" / "*.parquet"), recursive=True):
        pq.read_metadata(path)


@pytest.fixture(scope="module")
def inputs(archive: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("crash")
    folder = work / "archive"
    folder.mkdir()
    clip = next(v for v in archive if v.stem == "carphone")
    shutil.copy(clip, folder / "carphone.mp4")
    shutil.copy(clip, folder / "carphone copy.mp4")
    images = work / "images"
    images.mkdir()
    for i, ts in enumerate((1.0, 2.0, 3.0)):
        grab_frame(folder / "carphone.mp4", ts).save(images / f"grab {i}.png")
    (images / "broken.png").write_text("not an image")
    reference = work / "reference"
    index.run(["--archive", str(folder), "--index", str(reference), *EMBEDDED])
    return {"work": work, "archive": folder, "images": images, "reference": reference}


def test_index_killed_and_rerun(inputs: dict):
    expected = live_index(inputs["reference"])
    assert expected[1]
    killed = 0
    for name, pattern, after_s in INDEX_POINTS:
        idx = inputs["work"] / f"index {name}"
        args = ["--archive", str(inputs["archive"]), "--index", str(idx), *EMBEDDED]
        killed += kill_at(["index", *args], idx, pattern, after_s)
        assert_no_partial_parquet(idx)
        if load_manifest(str(idx)) is not None:  # visible: then whole
            assert live_index(idx) == expected, name
        index.run(args)
        videos, frames = live_index(idx)
        assert (videos, frames) == expected, name  # same rows, none twice
        assert check.run([str(idx)]) == 0, name
    print(f"index: killed at {killed} of {len(INDEX_POINTS)} points")
    assert killed >= 3


def queries_and_matches(out: Path) -> tuple[list, list]:
    def rows(table: str, columns: tuple[str, ...]) -> list:
        data = ds.dataset(out / table, format="parquet", partitioning="hive").to_table()
        return sorted(zip(*(data.column(c).to_pylist() for c in columns), strict=True))
    return (rows("queries", ("query_uri", "status", "query_sha256", "best_distance")),
            rows("matches", ("query_uri", "ref_uri", "rank", "ref_ts_s", "distance")))


def test_match_killed_and_rerun(inputs: dict):
    idx = str(inputs["reference"])
    base = ["--index", idx, "--images", str(inputs["images"]), "--run_date", "2026-11-26",
            "--run_id", "nightly", *EMBEDDED]
    reference = inputs["work"] / "match reference"
    match.run([*base, "--out", str(reference)])
    expected = queries_and_matches(reference)
    assert len(expected[0]) == 4 and expected[1]
    killed = 0
    for name, pattern, after_s in MATCH_POINTS:
        out = inputs["work"] / f"match {name}"
        killed += kill_at(["match", *base, "--out", str(out)], out, pattern, after_s)
        assert_no_partial_parquet(out)
        interrupted = glob.glob(str(out / "*" / "run_date=*" / "run_id=*" / "*.parquet"))
        if interrupted and not (out / "runs").exists():
            assert check.run([str(out)]) == 1, name  # the check flags the half run
        match.run([*base, "--out", str(out)])
        assert queries_and_matches(out) == expected, name
        assert check.run([str(out)]) == 0, name
    match.run([*base, "--out", str(reference)])  # a finished run, rerun: adds nothing
    assert queries_and_matches(reference) == expected
    print(f"match: killed at {killed} of {len(MATCH_POINTS)} points")
    assert killed >= 2
