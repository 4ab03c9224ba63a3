"""The index and match jobs end to end on ``gs://`` paths, against a real emulator.

A real clip of the test archive and edited screengrabs of it are uploaded with
google-cloud-storage; the jobs then only ever see ``gs://`` URIs: listing a prefix, FFmpeg
reading the video (through a local temp copy), Parquet sinks, the index manifest, the
verification stage's stored pictures, reruns deleting their partitions and the ``runs``
record. The results are read back from ``gs://`` with pyarrow through ``FileSystems``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
from pathlib import Path

import pytest

from evaluation.edits import EDITS, grab_frame
from evaluation.footage import load_truth
from evaluation.scoring import is_hit
from pipelines import index, match
from schemas.records import DEAD_LETTER_SCHEMA, MATCHES_SCHEMA, QUERIES_SCHEMA
from tests.conftest import EMBEDDED
from tests.gcs_emulator import emulator_client
from transforms.index import manifest_log, store
from transforms.io import parquet
from transforms.io import storage as fio

CLIP = "reel_00.mp4"
SEGMENT_S = "10"  # several segments per clip: each decodes from the gs:// object
EDITS_USED = ("caption", "jpeg_resize", "flip")
RUN = ["--run_id", "g1", "--run_date", "2026-11-26", *EMBEDDED]


def upload(bucket: str, name: str, data: bytes) -> str:
    emulator_client().bucket(bucket).blob(name).upload_from_string(data)
    return f"gs://{bucket}/{name}"


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def gcs_run(gcs_bucket: str, archive: list[Path]) -> dict:
    """Upload a clip, a non-video and a broken video; index; upload screengrabs; match."""
    video = next(v for v in archive if v.name == CLIP)
    root = f"gs://{gcs_bucket}/jobs"
    upload(gcs_bucket, f"jobs/archive/news/{CLIP}", video.read_bytes())
    upload(gcs_bucket, "jobs/archive/readme.txt", b"not a video")
    upload(gcs_bucket, "jobs/archive/broken.mp4", video.read_bytes()[:2000])

    shots = [s for s in load_truth(video)["shots"] if not s["degenerate"]]
    truth = {}
    for i, (shot, edit) in enumerate(zip(shots, EDITS_USED, strict=False)):
        ts = round((shot["t_start"] + shot["t_end"]) / 2, 2)
        image = EDITS[edit](grab_frame(video, ts), random.Random(i))
        truth[upload(gcs_bucket, f"jobs/posts/{i}_{edit}.png", png_bytes(image))] = ts
    upload(gcs_bucket, "jobs/posts/corrupt.jpg", b"\xff\xd8\xff not a jpeg")

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        index.run(["--archive", f"{root}/archive/", "--index", f"{root}/index",
                   "--segment_seconds", SEGMENT_S, *EMBEDDED])
    # a prefix without its trailing slash names no object: it is listed as a prefix
    args = ["--index", f"{root}/index", "--images", f"{root}/posts", "--out", f"{root}/out",
            *RUN]
    partitions = match.run(args)
    return {"root": root, "truth": truth, "partitions": partitions, "args": args,
            "video_uri": f"{root}/archive/news/{CLIP}", "index_metrics": metrics(printed),
            "video_bytes": video.stat().st_size}


def metrics(printed: io.StringIO) -> dict[str, str]:
    """The ``name: value`` lines a job printed (``pipelines.metrics.print_metrics``)."""
    return dict(line.strip().split(": ", 1) for line in printed.getvalue().splitlines()
                if line.startswith("  ") and ": " in line)


def test_index_on_gcs_lists_decodes_and_writes_manifest(gcs_run: dict) -> None:
    root = gcs_run["root"]
    manifest = store.load_manifest(f"{root}/index")
    assert manifest is not None and len(manifest.partitions) == 1
    (part,) = manifest.partitions
    assert (part.videos, part.tombstones, part.dead_letters) == (1, 0, 2)
    videos = store.live_videos(f"{root}/index", manifest)
    assert videos.column("uri").to_pylist() == [gcs_run["video_uri"]]
    frames = store.live_frames(f"{root}/index", manifest, videos)
    assert frames.num_rows == part.rows > 0
    # every 10 s segment decoded from the object: rows span the whole clip
    assert max(frames.column("ts_start").to_pylist()) > 30

    dead = parquet.read_table(f"{root}/index/dead_letter/batch={part.batch_id}",
                            DEAD_LETTER_SCHEMA).to_pylist()
    stages = {d["uri"].rsplit("/", 1)[-1]: d["stage"] for d in dead}
    assert stages == {"readme.txt": "list", "broken.mp4": "probe"}


def test_match_on_gcs_finds_video_and_time(gcs_run: dict) -> None:
    parts = gcs_run["partitions"]
    assert all(p.startswith("gs://") for p in parts.values())
    matches = parquet.read_table(parts["matches"], MATCHES_SCHEMA).to_pylist()
    best = {m["query_uri"]: m for m in matches if m["rank"] == 1}
    for uri, ts in gcs_run["truth"].items():
        assert uri in best, f"{uri} not matched"
        assert best[uri]["ref_uri"] == gcs_run["video_uri"]
        assert is_hit(best[uri], CLIP, ts), (uri, ts, best[uri]["ref_ts_s"])

    queries = {q["query_uri"]: q for q in
               parquet.read_table(parts["queries"], QUERIES_SCHEMA).to_pylist()}
    corrupt = f"{gcs_run['root']}/posts/corrupt.jpg"
    assert len(queries) == len(gcs_run["truth"]) + 1
    assert queries[corrupt]["status"] == "failed"
    dead = parquet.read_table(parts["dead_letter"], DEAD_LETTER_SCHEMA).to_pylist()
    assert [d["uri"] for d in dead] == [corrupt]


def test_match_rerun_on_gcs_replaces_its_partitions(gcs_run: dict) -> None:
    before = {t: parquet.parquet_files(d) for t, d in gcs_run["partitions"].items()}
    match.run(gcs_run["args"])
    counts = {t: parquet.count_rows(d) for t, d in gcs_run["partitions"].items()}
    assert counts["queries"] == len(gcs_run["truth"]) + 1
    assert counts["dead_letter"] == 1
    assert {t: parquet.parquet_files(d) for t, d in gcs_run["partitions"].items()} == before
    run_record = f"{gcs_run['root']}/out/runs/run_date=2026-11-26/run_id=g1/part-0.parquet"
    assert fio.exists(run_record)
    index = f"{gcs_run['root']}/index"  # its manifest log, on the bucket
    assert manifest_log.versions(index) == [1]
    manifest = json.loads(fio.read_text(manifest_log.version_uri(index, 1)))
    assert manifest["partitions"][0]["videos"] == 1


def test_expand_source_on_gcs(gcs_bucket: str) -> None:
    upload(gcs_bucket, "expand/a/clip.mp4", b"x")
    upload(gcs_bucket, "expand/list.txt", f"gs://{gcs_bucket}/expand/a/*.mp4\n# note\n".encode())
    prefix = f"gs://{gcs_bucket}/expand/a"
    assert fio.expand_source(prefix) == fio.expand_source(prefix + "/") == [f"{prefix}/**"]
    assert fio.expand_source(f"{prefix}/clip.mp4") == [f"{prefix}/clip.mp4"]
    assert fio.expand_source(f"gs://{gcs_bucket}/expand/list.txt") == [f"{prefix}/*.mp4"]


def test_local_copies_reuse_bound_and_clean_up(gcs_bucket: str, tmp_path: Path) -> None:
    uris = [upload(gcs_bucket, f"copies/{i}.mp4", bytes([i]) * 1000) for i in range(3)]
    local = tmp_path / "local.mp4"
    local.write_bytes(b"local")
    copies = fio.LocalCopies(max_bytes=2500)
    try:
        first, copied = copies.get(uris[0], 1)
        assert copied == 1000 and copies.get(uris[0], 1) == (first, 0)  # reused, not copied
        assert Path(first.path).read_bytes() == bytes([0]) * 1000
        assert first.sha256 == hashlib.sha256(bytes([0]) * 1000).hexdigest()
        # the CRC32C of the bytes copied is what Cloud Storage reports for the object
        assert first.crc32c == emulator_client().bucket(gcs_bucket).get_blob(
            "copies/0.mp4").crc32c
        second, copied = copies.get(uris[0], 2)  # a new version is copied again
        assert second.path != first.path and copied == 1000
        newest = [copies.get(u, 1)[0].path for u in uris[1:]]  # over 2500 B: oldest go first
        assert [Path(p).exists() for p in (first.path, second.path, *newest)] == [
            False, False, True, True]
    finally:
        copies.close()
    assert not any(Path(p).exists() for p in newest)


def test_a_remote_video_is_downloaded_once_and_a_rewrite_is_no_change(
        gcs_bucket: str, gcs_run: dict) -> None:
    """Every segment of the clip decodes from the probe's one download (plus the broken
    file's one download); a storage-class rewrite (new update time and generation, same
    bytes) is recognised by the object's CRC32C: nothing is downloaded or re-indexed."""
    decoded = gcs_run["index_metrics"]
    assert int(decoded["remote_bytes_copied"]) == gcs_run["video_bytes"] + 2000
    blob = emulator_client().bucket(gcs_bucket).get_blob(f"jobs/archive/news/{CLIP}")
    before = blob.updated
    blob.update_storage_class("NEARLINE")
    assert emulator_client().bucket(gcs_bucket).get_blob(
        f"jobs/archive/news/{CLIP}").updated != before
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        manifest = index.run(["--archive", f"{gcs_run['root']}/archive/",
                              "--index", f"{gcs_run['root']}/index", *EMBEDDED])
    again = metrics(printed)
    assert again["videos_touched_same_content"] == "1"
    assert again["videos_unchanged"] == "1"
    # the video is not downloaded at all (the broken file, retried as every dead letter is,
    # is still in this process's copies from the first run)
    assert again.get("remote_bytes_copied", "0") == "0"
    assert manifest.partitions[-1].videos == 0 and manifest.partitions[-1].tombstones == 0
