"""Index lifecycle (takedown, compaction, rollback) and the exit codes schedulers act on,
through the ``framematch`` command on real indexes of real footage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, main
from pipelines.commands import check
from schemas.manifest import partition_dir
from tests.conftest import EMBEDDED, live_index
from transforms.index.store import load_manifest
from transforms.io import parquet


def live(idx: Path) -> tuple[set[str], list]:
    videos, rows = live_index(idx)
    return {uri for uri, _ in videos}, rows


@pytest.fixture()
def clips(archive: list[Path], tmp_path: Path) -> dict:
    folder = tmp_path / "archive"
    folder.mkdir()
    carphone = next(v for v in archive if v.stem == "carphone")
    shutil.copy(carphone, folder / "a.mp4")
    return {"folder": folder, "source": carphone, "index": tmp_path / "index",
            "args": ["--archive", str(folder), "--index", str(tmp_path / "index"), *EMBEDDED]}


def test_takedown_compact_rollback(clips: dict):
    folder, idx, args = clips["folder"], clips["index"], clips["args"]
    assert main(["index", *args]) == EXIT_OK
    first = load_manifest(str(idx)).partitions[-1].batch_id
    shutil.copy(clips["source"], folder / "b.mp4")
    assert main(["index", *args]) == EXIT_OK
    a, b = str(folder / "a.mp4"), str(folder / "b.mp4")
    uris, both_rows = live(idx)
    assert uris == {a, b}

    assert main(["takedown", "--index", str(idx), "--uri", b, "--reason", "request 7"]) == 0
    uris, rows = live(idx)
    assert uris == {a} and rows == [r for r in both_rows if r[0] == a]
    assert main(["index", *args]) == EXIT_OK  # still listed, stays down: counted unchanged
    assert live(idx) == (uris, rows) and load_manifest(str(idx)).partitions[-1].videos == 0

    old = [p.batch_id for p in load_manifest(str(idx)).partitions]
    assert main(["compact-index", "--index", str(idx), "--retain_hours", "0"]) == 0
    (compacted,) = load_manifest(str(idx)).partitions
    assert live(idx) == (uris, rows)  # the same live rows, from one partition
    assert not any(parquet.parquet_files(partition_dir(str(idx), "frames", b)) for b in old)
    assert main(["index", *args]) == EXIT_OK  # nothing re-indexed, b still down
    assert live(idx) == (uris, rows) and load_manifest(str(idx)).partitions[-1].videos == 0
    assert check.run([str(idx)]) == 0

    latest = load_manifest(str(idx)).partitions[-1].batch_id
    assert main(["rollback", "--index", str(idx), "--to", compacted.batch_id]) == 0
    assert [p.batch_id for p in load_manifest(str(idx)).partitions] == [compacted.batch_id]
    assert main(["rollback", "--index", str(idx), "--to", latest]) == 0  # undone from history
    assert load_manifest(str(idx)).partitions[-1].batch_id == latest
    with pytest.raises(SystemExit, match="neither a batch"):
        main(["rollback", "--index", str(idx), "--to", first])  # compacted away


def test_rollback_to_an_earlier_batch(clips: dict):
    folder, idx, args = clips["folder"], clips["index"], clips["args"]
    main(["index", *args])
    first = load_manifest(str(idx)).partitions[-1].batch_id
    before = live(idx)
    shutil.copy(clips["source"], folder / "b.mp4")
    main(["index", *args])
    second = load_manifest(str(idx)).partitions[-1].batch_id
    after = live(idx)
    assert after != before
    assert main(["rollback", "--index", str(idx), "--to", first]) == 0
    assert live(idx) == before
    assert main(["rollback", "--index", str(idx), "--to", second]) == 0  # undone: the log
    assert live(idx) == after
    assert main(["rollback", "--index", str(idx), "--to", first]) == 0
    assert main(["index", *args]) == EXIT_OK  # the rolled-back file is indexed again
    assert live(idx)[0] == {str(folder / "a.mp4"), str(folder / "b.mp4")}


def test_compaction_keeps_what_retained_versions_read(clips: dict):
    """Under the default retention a compaction deletes nothing a reader may still hold:
    the superseded batches stay (a rollback to them works), and only a vacuum past the
    retention (here: --retain_hours 0 on a later compaction) deletes them."""
    folder, idx, args = clips["folder"], clips["index"], clips["args"]
    main(["index", *args])
    shutil.copy(clips["source"], folder / "b.mp4")
    main(["index", *args])
    before = live(idx)
    old = [p.batch_id for p in load_manifest(str(idx)).partitions]
    assert main(["compact-index", "--index", str(idx)]) == 0
    assert all(parquet.parquet_files(partition_dir(str(idx), "frames", b)) for b in old)
    assert live(idx) == before
    assert main(["rollback", "--index", str(idx), "--to", old[-1]]) == 0  # the old version
    assert [p.batch_id for p in load_manifest(str(idx)).partitions] == old
    assert live(idx) == before and check.run([str(idx)]) == 0
    assert main(["compact-index", "--index", str(idx), "--retain_hours", "0"]) == 0
    assert not any(parquet.parquet_files(partition_dir(str(idx), "frames", b)) for b in old)
    assert live(idx) == before and check.run([str(idx)]) == 0


def test_exit_codes(clips: dict, tmp_path: Path, capsys: pytest.CaptureFixture):
    folder, args = clips["folder"], clips["args"]
    (folder / "broken.mp4").write_text("not a video")
    assert main(["index", *args]) == EXIT_PARTIAL
    bad = tmp_path / "only bad"
    bad.mkdir()
    (bad / "x.mp4").write_text("not a video")
    assert main(["index", "--archive", str(bad), "--index", str(tmp_path / "i2"),
                 *EMBEDDED]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert "WARNING: no output from 1 inputs" in captured.err
    assert "WARNING: dead letters spiked: 1 of 1 inputs" in captured.err
    summaries = [ln for ln in captured.out.splitlines() if ln.startswith("framematch index")]
    assert [s.split(": ")[1].split(" (")[0] for s in summaries] == ["partial success",
                                                                    "failure"]
