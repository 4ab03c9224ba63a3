"""The match job end to end: edited screengrabs of real footage traced to video and time.

One session-wide run over a folder of edited screengrabs, distractor photos and hostile
files; the tests read its real Parquet output back (pyarrow and DuckDB).
"""

from __future__ import annotations

import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image

from evaluation.edits import EDITS, grab_frame, make_queries
from evaluation.footage import distractor_photos, load_truth
from evaluation.scoring import is_hit, score
from pipelines import index, match
from pipelines.commands import purge
from schemas.records import MATCHES_SCHEMA, QUERIES_SCHEMA
from tests.conftest import EMBEDDED, build_once
from transforms.index import manifest_log
from transforms.results.verdicts import record_verdict

RUN = ["--run_id", "t1", "--run_date", "2026-11-26", *EMBEDDED]
# Edits the hash path alone could trace; the others (rotation, heavy crops, letterboxing in
# a phone frame) need the default's local-feature check; `framematch eval` measures both.
HASH_PATH_EDITS = ("jpeg_resize", "colour", "flip", "pad_square", "centre_crop", "caption",
                   "caption+jpeg_resize")


def hostile_inputs(folder: Path, frame: Image.Image) -> dict[str, str]:
    """Broken and odd images, and the status each must end with."""
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    buf = folder / "full.jpg"
    frame.save(buf, quality=90)
    data = buf.read_bytes()
    buf.unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("1", (12000, 12000)).save(folder / "bomb.png")
    Image.new("L", (640, 360), 0).save(folder / "black.png")
    frame.convert("CMYK").save(folder / "cmyk.jpg", quality=92)
    sixteen = (np.asarray(frame.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(sixteen).save(folder / "grey16.png")
    rotated = frame.transpose(Image.Transpose.ROTATE_90)  # shown upright via EXIF 6
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(folder / "exif_rotated.jpg", quality=92, exif=exif)
    rgba = frame.convert("RGBA")
    rgba.save(folder / "alpha.png")
    frames = [frame, frame.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    shutil.copy(folder / "alpha.png", folder / "repost of alpha.png")
    return {"empty.jpg": "failed", "text.png": "failed", "truncated.jpg": "failed",
            "bomb.png": "failed", "black.png": "no_match", "cmyk.jpg": "matched",
            "grey16.png": "matched", "exif_rotated.jpg": "matched", "alpha.png": "matched",
            "animated.gif": "matched", "repost of alpha.png": "matched"}


@pytest.fixture(scope="session")
def match_run(index_dir: Path, archive: list[Path], shared_dir: Path) -> dict:
    work = shared_dir / "match"

    def build(directory: Path) -> None:
        queries = directory / "queries"
        make_queries(archive, {v: load_truth(v) for v in archive}, queries, 6, seed=3)
        for photo in distractor_photos():
            shutil.copy(photo, queries / f"distractor_{photo.name}")
        still = next(s for s in load_truth(archive[0])["shots"] if not s["degenerate"])
        hostile = directory / "hostile"
        hostile.mkdir()
        truth = {"video": archive[0].name, "ts": (still["t_start"] + still["t_end"]) / 2}
        expected = hostile_inputs(hostile, grab_frame(archive[0], truth["ts"]))
        (directory / "hostile.json").write_text(json.dumps({"expected": expected, **truth}))
        sidecar = directory / "posts.csv"
        sidecar.write_text("uri,post_url,platform,posted_at,case_id\n"
                           "cmyk.jpg,https://example.org/p/1,x,2026-11-25T10:00:00Z,C-7\n")
        # overlapping patterns on purpose: a file listed twice is still one input
        (directory / "inputs.txt").write_text(
            f"{queries}/*.png\n{queries}/distractor_*\n{hostile}/*\n")
        match.run(["--index", str(index_dir), "--images", str(directory / "inputs.txt"),
                   "--out", str(directory / "out"), "--meta", str(sidecar), *RUN])

    build_once(work, build)
    labels = json.loads((work / "queries" / "labels.json").read_text())
    return {"work": work, "out": work / "out", "labels": labels,
            "hostile": json.loads((work / "hostile.json").read_text())}


def table(out: Path, name: str) -> list[dict]:
    return ds.dataset(out / name, format="parquet", partitioning="hive").to_table().to_pylist()


def by_image(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["rank"]):
        grouped[Path(row["query_uri"]).name].append(row)
    return grouped


def test_output_schemas_and_layout(match_run: dict):
    out = match_run["out"]
    for name, schema in (("matches", MATCHES_SCHEMA), ("queries", QUERIES_SCHEMA)):
        (partition,) = (out / name).glob("run_date=*/run_id=*")
        assert partition.relative_to(out / name).as_posix() == "run_date=2026-11-26/run_id=t1"
        files = list(partition.glob("part-*.parquet"))
        assert files
        assert ds.dataset(files, format="parquet").schema.equals(schema, check_metadata=False)


def test_edited_screengrabs_are_traced(match_run: dict):
    matches = by_image(table(match_run["out"], "matches"))
    sourced = [label for label in match_run["labels"] if not label["degenerate"]]
    scores = score(sourced, matches)
    for edit, s in scores.items():
        print(f"{edit:26s} n={s.n:3d} recall@1={s.recall1:.2f}")
    easy = [label for label in sourced if label["edit"] in HASH_PATH_EDITS]
    assert score(easy, matches)["all"].recall1 >= 0.9
    assert scores["all"].recall1 >= 0.85  # the default checks with local features


def test_distractors_match_nothing(match_run: dict):
    queries = {Path(q["query_uri"]).name: q for q in table(match_run["out"], "queries")}
    distractors = [q for name, q in queries.items() if name.startswith("distractor_")]
    assert len(distractors) == len(distractor_photos())
    assert all(q["status"] == "no_match" for q in distractors), distractors


def test_every_input_once_and_counts_reconcile(match_run: dict):
    out = match_run["out"]
    queries = table(out, "queries")
    names = [Path(q["query_uri"]).name for q in queries]
    listed = {*(match_run["work"] / "queries").glob("*.png"),
              *(match_run["work"] / "queries").glob("distractor_*")}
    n_inputs = len(listed) + len(match_run["hostile"]["expected"])
    assert len(names) == len(set(names)) == n_inputs
    failed = {q["query_uri"] for q in queries if q["status"] == "failed"}
    dead = table(out, "dead_letter")
    assert {d["uri"] for d in dead} == failed and len(dead) == len(failed)
    assert all(d["stage"] in ("read", "decode", "too_large") and d["error"] for d in dead)
    matched = {q["query_uri"] for q in queries if q["status"] == "matched"}
    assert {m["query_uri"] for m in table(out, "matches")} == matched


def test_hostile_images(match_run: dict):
    hostile = match_run["hostile"]
    queries = {Path(q["query_uri"]).name: q for q in table(match_run["out"], "queries")}
    got = {name: queries[name]["status"] for name in hostile["expected"]}
    assert got == hostile["expected"]
    assert "too_large" in queries["bomb.png"]["reason"]
    assert "flat" in queries["black.png"]["reason"]
    matches = by_image(table(match_run["out"], "matches"))
    for name, status in hostile["expected"].items():
        if status == "matched":  # every odd encoding of the frame finds it
            assert is_hit(matches[name][0], hostile["video"], hostile["ts"]), name
    # identical bytes under two names: one decode, the same answer for both
    a, b = queries["alpha.png"], queries["repost of alpha.png"]
    assert a["query_sha256"] == b["query_sha256"] and a["best_distance"] == b["best_distance"]


def test_sidecar_fields_reach_the_analyst(match_run: dict):
    rows = duckdb.sql(f"""
        select post_url, case_id, ref_uri, ref_ts_s from read_parquet(
            '{match_run["out"]}/matches/**/*.parquet', hive_partitioning=true)
        where query_uri like '%cmyk.jpg' and rank = 1""").fetchall()
    assert len(rows) == 1 and rows[0][:2] == ("https://example.org/p/1", "C-7")


def test_rerun_replaces_its_partition(index_dir: Path, match_run: dict, tmp_path: Path):
    out = tmp_path / "out"
    images = tmp_path / "images"
    images.mkdir()
    for name in ("alpha.png", "text.png"):
        shutil.copy(match_run["work"] / "hostile" / name, images / name)
    args = ["--index", str(index_dir), "--images", str(images), "--out", str(out), *RUN]
    match.run(args)
    match.run(args)
    assert len(table(out, "queries")) == 2
    assert len(table(out, "dead_letter")) == 1


def test_refuses_an_index_of_another_preprocessing(index_dir: Path, tmp_path: Path):
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    live = Path(manifest_log.version_uri(str(copy), manifest_log.versions(str(copy))[-1]))
    manifest = json.loads(live.read_text())
    manifest["preprocess_version"] += 1
    live.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="preprocessing version"):
        match.run(["--index", str(copy), "--images", str(tmp_path), "--out",
                   str(tmp_path / "o"), *RUN])


def test_verification_rescues_rotations_and_rejects_distractors(
        index_dir: Path, archive: list[Path], tmp_path: Path):
    """Rotated screengrabs, whose plain hashes match nothing, are found (by the variants
    turned back a little, or from their nearest rows) and checked by local features, which
    accept them wherever the frame has corners enough (the smooth retina still cannot be
    judged: the hashes' word stands); photos still match nothing."""
    images = tmp_path / "images"
    images.mkdir()
    truth = {}
    for video in archive[:3]:
        shots = [s for s in load_truth(video).get("shots") or [] if not s["degenerate"]]
        ts = (shots[0]["t_start"] + shots[0]["t_end"]) / 2 if shots else 2.0  # clips: 2 s
        name = f"rotated_{video.stem}.png"
        EDITS["rotate"](grab_frame(video, ts), random.Random(name)).save(images / name)
        truth[name] = (video.name, ts)
    for photo in distractor_photos()[:3]:
        shutil.copy(photo, images / f"distractor_{photo.name}")
    out = tmp_path / "out"
    match.run(["--index", str(index_dir), "--images", str(images), "--out", str(out),
               *RUN])
    matches = by_image(table(out, "matches"))
    for name, (video, ts) in truth.items():
        assert matches.get(name), name
        best = matches[name][0]
        assert is_hit(best, video, ts) and best["verified"] is not False, (name, best)
    assert sum(matches[name][0]["verified"] is True for name in truth) >= 2
    assert not [n for n in matches if n.startswith("distractor_")]


def test_nightly_rematch_finds_old_images_of_newly_indexed_videos(
        archive: list[Path], tmp_path: Path):
    """Night 1: an image whose video is not indexed yet matches nothing. Night 2, after the
    video is indexed: a run over new images also re-matches that old image, against the new
    partition only, so "new matches since yesterday" includes it."""
    archive_dir, idx, out = tmp_path / "archive", tmp_path / "index", tmp_path / "out"
    archive_dir.mkdir()
    shutil.copy(archive[-1], archive_dir / archive[-1].name)  # carphone only
    index.run(["--archive", str(archive_dir), "--index", str(idx), *EMBEDDED])
    night1, night2 = tmp_path / "night1", tmp_path / "night2"
    night1.mkdir()
    night2.mkdir()
    grab_frame(archive[-2], 2.0).save(night1 / "old_post.png")  # bigbuckbunny, not indexed
    grab_frame(archive[-1], 2.0).save(night2 / "new_post.png")
    match.run(["--index", str(idx), "--images", str(night1), "--out", str(out),
               "--run_id", "n1", *EMBEDDED])
    shutil.copy(archive[-2], archive_dir / archive[-2].name)
    index.run(["--archive", str(archive_dir), "--index", str(idx), *EMBEDDED])
    match.run(["--index", str(idx), "--images", str(night2), "--out", str(out),
               "--run_id", "n2", *EMBEDDED])
    rows = duckdb.sql(f"""
        select run_id, query_uri, status from read_parquet(
            '{out}/queries/**/*.parquet', hive_partitioning=true) order by run_id, query_uri
    """).fetchall()
    assert sorted((r, Path(u).name, s) for r, u, s in rows) == [
        ("n1", "old_post.png", "no_match"), ("n2", "new_post.png", "matched"),
        ("n2", "old_post.png", "matched")]
    matches = by_image([m for m in table(out, "matches") if m["run_id"] == "n2"])
    assert is_hit(matches["old_post.png"][0], archive[-2].name, 2.0)


def test_rejected_pairs_stay_out_of_later_runs(index_dir: Path, match_run: dict,
                                               tmp_path: Path):
    """An analyst rejects a (posted image, video) pair: the next run leaves it out."""
    out, images = tmp_path / "out", tmp_path / "images"
    images.mkdir()
    shutil.copy(match_run["work"] / "hostile" / "alpha.png", images / "alpha.png")
    args = ["--index", str(index_dir), "--images", str(images), "--out", str(out), *EMBEDDED]
    match.run([*args, "--run_id", "before"])
    (best,) = [m for m in table(out, "matches") if m["rank"] == 1]
    record_verdict(str(out), best["query_uri"], best["ref_uri"], "rejected", "tester")
    match.run([*args, "--run_id", "after"])
    after = [m for m in table(out, "matches") if m["run_id"] == "after"]
    assert best["ref_uri"] not in {m["ref_uri"] for m in after}


def test_purge_removes_an_image_everywhere(index_dir: Path, match_run: dict, tmp_path: Path):
    out, images = tmp_path / "out", tmp_path / "images"
    images.mkdir()
    for name in ("alpha.png", "repost of alpha.png", "cmyk.jpg", "text.png"):
        shutil.copy(match_run["work"] / "hostile" / name, images / name)
    match.run(["--index", str(index_dir), "--images", str(images), "--out", str(out), *RUN])
    alpha = next(q for q in table(out, "queries") if q["query_uri"].endswith("/alpha.png"))
    record_verdict(str(out), alpha["query_uri"], "whatever.mp4", "rejected", "tester")
    removed = purge.purge(str(out), alpha["query_sha256"])
    assert removed["queries"] == 2 and removed["matches"] >= 2 and removed["verdicts"] == 1
    left = {Path(q["query_uri"]).name for q in table(out, "queries")}
    assert left == {"cmyk.jpg", "text.png"}
    assert not [m for m in table(out, "matches") if "alpha" in m["query_uri"]]
    purge.purge(str(out), str(images / "text.png"))  # by URI, a failed one too
    assert not table(out, "dead_letter")
