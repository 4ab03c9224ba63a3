"""The index job end to end: real FFmpeg on real footage, real Parquet read back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from evaluation.footage import load_truth
from pipelines import index
from schemas.manifest import partition_dir
from schemas.records import DEAD_LETTER_SCHEMA, FRAMES_SCHEMA, VIDEOS_SCHEMA
from tests.conftest import EMBEDDED
from transforms.hashing import hashes, pdq
from transforms.hashing.pdq import PdqSampler
from transforms.hashing.regions import REGIONS
from transforms.index.store import live_frames, live_videos, load_manifest
from transforms.media import decode, preprocess
from transforms.media.pictures import decode_reference, reference_size

INDEX_FLAGS = ["--segment_seconds", "20", *EMBEDDED]


def read_partition(index_dir: Path, table: str, batch_id: str):
    return pq.read_table(partition_dir(str(index_dir), table, batch_id))


def test_index_tables_schemas_and_counts(index_dir: Path, archive: list[Path]):
    manifest = load_manifest(str(index_dir))
    (part,) = manifest.partitions
    assert manifest.prune_d == 8 and manifest.key_hasher == "phash256"
    videos = read_partition(index_dir, "videos", part.batch_id)
    frames = read_partition(index_dir, "frames", part.batch_id)
    assert videos.schema.equals(VIDEOS_SCHEMA, check_metadata=False)
    assert frames.schema.equals(FRAMES_SCHEMA, check_metadata=False)
    assert sorted(videos.column("uri").to_pylist()) == sorted(str(v) for v in archive)
    assert part.videos == len(archive) and part.dead_letters == 0
    assert part.rows == frames.num_rows
    for row in videos.to_pylist():
        truth = load_truth(Path(row["uri"]))
        assert row["duration"] == pytest.approx(truth["duration"], abs=0.1)
        assert [row["width"], row["height"]] == truth["size"]
        # pruning keeps fewer rows than frames decoded, at every crop
        assert 0 < row["n_rows"] < len(REGIONS) * row["n_frames_decoded"]


def test_degenerate_frames_are_flagged_not_keys(index_dir: Path, archive: list[Path]):
    """Fades to black and title cards are rows (the timeline stays whole) flagged flat or
    low-quality, so the matcher never uses them as keys."""
    manifest = load_manifest(str(index_dir))
    videos = live_videos(str(index_dir), manifest)
    frames = live_frames(str(index_dir), manifest, videos).to_pylist()
    uri_of = dict(zip(videos.column("video_id").to_pylist(), videos.column("uri").to_pylist(),
                      strict=True))
    checked = 0
    for vid, uri in uri_of.items():
        rows = [r for r in frames if r["video_id"] == vid and r["region"] == 0]
        for shot in load_truth(Path(uri)).get("shots") or []:
            if shot["kind"] != "black":
                continue
            mid = (shot["t_start"] + shot["t_end"]) / 2
            covering = [r for r in rows if r["ts_start"] <= mid <= r["ts_end"] + 0.05]
            assert covering and all(r["flat"] for r in covering), (uri, mid, covering)
            checked += 1
    assert checked >= 1, "the test archive should contain a black gap"


def test_cross_path_frame_and_png_hash_alike(archive: list[Path], tmp_path: Path):
    """A frame through the index path and the same frame as a lossless PNG through the
    image path land on (nearly) the same thumbnail and hashes; the index's PDQ of the frame
    (from its stored-size picture) is within a few bits of Meta's PDQ of the PNG."""
    video = archive[0]
    info = decode.probe(str(video))
    batch = next(decode.decode_frames(str(video), 10.0, 11.0,
                                      picture=reference_size(info.width, info.height)))
    png = tmp_path / "frame.png"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-copyts", "-ss", f"{batch.pts[0]:.6f}",
                    "-i", str(video), "-frames:v", "1", str(png)], check=True)
    image = Image.open(png).convert("RGB")
    from_video = batch.thumbs[:1]
    from_image = preprocess.thumbnail(image)[None]
    a = hashes.hash_batch(from_video, ["phash", "dhash", "phash256"])
    b = hashes.hash_batch(from_image, ["phash", "dhash", "phash256"])
    diffs = {h: int(hashes.hamming(a[h], b[h])[0]) for h in ("phash", "dhash", "phash256")}
    index_pdq, _ = PdqSampler((info.width, info.height), batch.limited.shape[:0:-1]).hash(
        batch.pictures(slice(0, 1)))
    meta_pdq, _ = pdq.reference(np.asarray(image))
    diffs["pdq vs Meta"] = int(hashes.hamming(index_pdq, meta_pdq[None])[0])
    print("cross-path bits differing:", diffs)
    assert diffs["phash"] <= 4 and diffs["dhash"] <= 4 and diffs["phash256"] <= 8
    assert diffs["pdq vs Meta"] <= 8
    assert np.abs(from_video.astype(int) - from_image.astype(int)).mean() < 2.0


def make_bad_inputs(folder: Path, good: Path) -> dict[str, str]:
    """Broken files and the stage each must be dead-lettered at."""
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n")
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.json").write_text("{}")
    return {"empty.mp4": "probe", "text.mp4": "probe", "notes.json": "list"}


def test_bad_inputs_dead_lettered_and_counts_reconcile(archive: list[Path], tmp_path: Path):
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copy(archive[-1], folder / "good clip ü.mp4")  # spaces and non-ASCII in the name
    expected = make_bad_inputs(folder, archive[-1])
    idx = tmp_path / "index"
    manifest = index.run(["--archive", str(folder), "--index", str(idx), *INDEX_FLAGS])
    (part,) = manifest.partitions
    dead = read_partition(idx, "dead_letter", part.batch_id)
    assert dead.schema.equals(DEAD_LETTER_SCHEMA, check_metadata=False)
    stages = {Path(u).name: s for u, s in zip(dead.column("uri").to_pylist(),
                                               dead.column("stage").to_pylist(), strict=True)}
    assert stages == expected
    assert all(dead.column("error").to_pylist())
    # the truncated file keeps what decoded, and says what was lost
    videos = {Path(r["uri"]).name: r for r in read_partition(idx, "videos", part.batch_id)
              .to_pylist()}
    assert videos["good clip ü.mp4"]["warning"] is None
    truncated = videos["truncated.mp4"]
    assert 0 < truncated["n_frames_decoded"] < videos["good clip ü.mp4"]["n_frames_decoded"]
    assert "segments failed" in truncated["warning"]
    listed = len(list(folder.iterdir()))
    assert listed == part.videos + part.dead_letters == 2 + len(expected)


def test_incremental_rerun_unchanged_replaced_deleted(archive: list[Path], tmp_path: Path):
    folder = tmp_path / "archive"
    folder.mkdir()
    a, b, c = (folder / n for n in ("a.mp4", "b.mp4", "c.mp4"))
    shutil.copy(archive[-1], a)
    shutil.copy(archive[-2], b)
    idx = str(tmp_path / "index")
    args = ["--archive", str(folder), "--index", idx, *INDEX_FLAGS]
    first = index.run(args)
    before = {r["uri"]: r for r in live_videos(idx, first).to_pylist()}

    # Unchanged files are not read at all: overwrite b's bytes keeping its size and mtime
    # (the change-detection key); had the rerun read b, its sha256 and video id would move.
    stat = b.stat()
    b.write_bytes(bytes(reversed(b.read_bytes())))
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = index.run(args)  # nothing changed: nothing read, nothing added
    assert second.partitions[-1].videos == 0 and second.partitions[-1].rows == 0
    assert second.partitions[-1].tombstones == 0
    shutil.copy(archive[-2], b)
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    shutil.copy(archive[-3], a)  # replaced in place
    b.unlink()  # deleted: tombstoned because this run is asked to (1 of 2 live videos)
    shutil.copy(archive[-2], c)  # new (same bytes as the deleted b, at another URI)
    third = index.run([*args, "--delete_missing", "--max_delete_fraction", "0.5"])
    part = third.partitions[-1]
    assert (part.videos, part.tombstones) == (2, 2)
    after = {r["uri"]: r for r in live_videos(idx, third).to_pylist()}
    assert set(after) == {str(a), str(c)}
    assert after[str(a)]["video_id"] != before[str(a)]["video_id"]
    frames = live_frames(idx, third, live_videos(idx, third))
    assert set(frames.column("video_id").to_pylist()) == {after[str(a)]["video_id"],
                                                          after[str(c)]["video_id"]}
    # every live video's rows come from exactly one partition: no duplicates
    assert frames.num_rows == sum(r["n_rows"] for r in after.values())


def test_refuses_changed_settings(tmp_path: Path, archive: list[Path]):
    idx = str(tmp_path / "index")
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a video")  # listed (and dead-lettered): an index
    index.run(["--archive", str(folder), "--index", idx, *INDEX_FLAGS])
    with pytest.raises(SystemExit, match="prune_d"):
        index.run(["--archive", str(folder), "--index", idx, "--prune_d", "3", *INDEX_FLAGS])


def test_multi_process_workers_give_the_same_rows(archive: list[Path], tmp_path: Path):
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copy(archive[-1], folder / "x.mp4")
    rows = []
    for workers in ("1", "2"):
        idx = tmp_path / f"index{workers}"
        m = index.run(["--archive", str(folder), "--index", str(idx), "--workers", workers,
                       "--segment_seconds", "2", *EMBEDDED])
        t = read_partition(idx, "frames", m.partitions[-1].batch_id)
        rows.append(sorted(zip(t.column("ts_start").to_pylist(), t.column("region").to_pylist(),
                               t.column("key").to_pylist(), strict=True)))
    assert rows[0] == rows[1] and rows[0]


def _photo_video(folder: Path, name: str, filters: str, metadata: list[str]) -> Image.Image:
    """A 2 s clip of a real photo shown at 640x360, coded through ``filters`` (an anamorphic
    squeeze, a turn) and tagged with ``metadata``; returns the picture a viewer sees."""
    photo = Image.open(Path(__file__).parents[1] / "tests" / "data" / "threatexchange" /
                       "q0746.jpg").convert("RGB").resize((640, 360), Image.Resampling.LANCZOS)
    still = folder / f"{name}.png"
    photo.save(still)
    coded = folder / f"{name}-coded.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(still), "-t", "2",
                    "-r", "25", "-vf", filters, "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(coded)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(coded), "-c", "copy", *metadata,
                    str(folder / "archive" / f"{name}.mp4")], check=True)
    return photo


def test_stored_pictures_are_what_a_viewer_sees(tmp_path: Path):
    """Non-square pixels (SD broadcast) and a display rotation (phone video) are applied to
    the stored pictures and recorded sizes, so a screengrab, which shows the picture as
    displayed, verifies against an undistorted reference."""
    (tmp_path / "archive").mkdir()
    shown = {
        "anamorphic": _photo_video(tmp_path, "anamorphic", "scale=480:360,setsar=4/3", []),
        "rotated": _photo_video(tmp_path, "rotated", "transpose=1",
                                ["-metadata:s:v:0", "rotate=90"]),
    }
    idx = tmp_path / "index"
    index.run(["--archive", str(tmp_path / "archive"), "--index", str(idx), *EMBEDDED])
    manifest = load_manifest(str(idx))
    videos = live_videos(str(idx), manifest).to_pylist()
    (batch,) = manifest.partitions
    pictures_table = read_partition(idx, "references", batch.batch_id).to_pylist()
    for video in videos:
        name = Path(video["uri"]).stem
        assert (video["width"], video["height"]) == (640, 360), name
        stored = [r for r in pictures_table if r["video_id"] == video["video_id"]]
        picture = decode_reference(stored[0]["jpeg"])
        assert picture.shape == (180, 320), name
        expected = np.asarray(shown[name].convert("L").resize((320, 180), Image.Resampling.BOX),
                              dtype=np.float32)
        assert np.abs(picture.astype(np.float32) - expected).mean() < 8, name
