"""Both jobs over the hostile-input corpus (evaluation/bad_inputs.py): every input ends in
the output or a dead letter at the stage it was meant to reach, the jobs finish, the counts
reconcile, and the canary outside the inputs never shows up."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from evaluation.bad_inputs import Corpus, big_picture_video, make_corpus
from evaluation.edits import grab_frame
from evaluation.footage import load_truth
from pipelines import index, match
from pipelines.cli import EXIT_PARTIAL, outcome
from schemas.manifest import partition_dir
from schemas.records import DEAD_LETTER_SCHEMA
from tests.conftest import EMBEDDED
from transforms.hashing import hashes
from transforms.index.store import live_frames, live_videos
from transforms.io import parquet
from transforms.media import decode, preprocess
from transforms.media.pictures import reference_size


@pytest.fixture(scope="module")
def corpus(archive: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    good = archive[0]
    still = next(s for s in load_truth(good)["shots"] if not s["degenerate"])
    frame = grab_frame(good, (still["t_start"] + still["t_end"]) / 2)
    return make_corpus(tmp_path_factory.mktemp("bad"), good, frame)


@pytest.fixture(scope="module")
def runs(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("runs")
    began = time.monotonic()
    manifest, index_record = index.execute([
        "--archive", str(corpus.archive), "--index", str(work / "index"),
        "--probe_timeout", "5", "--decode_timeout", "20", *EMBEDDED])
    _, match_record = match.execute([
        "--index", str(work / "index"), "--images", str(corpus.images),
        "--out", str(work / "out"), "--run_id", "bad", *EMBEDDED])
    print(f"both jobs over {len(corpus.videos) + len(corpus.pictures)} bad inputs: "
          f"{time.monotonic() - began:.1f} s")
    return {"index": work / "index", "out": work / "out", "manifest": manifest,
            "index_record": index_record, "match_record": match_record}


def index_outcomes(index_dir: Path, manifest) -> dict[str, str]:
    videos = live_videos(str(index_dir), manifest).to_pylist()
    dead = parquet.read_table(partition_dir(str(index_dir), "dead_letter",
                                          manifest.partitions[-1].batch_id), DEAD_LETTER_SCHEMA)
    got = {Path(v["uri"]).name: "warning" if v["warning"] else "indexed" for v in videos}
    for row in dead.to_pylist():
        name = Path(row["uri"]).name
        assert name not in got, f"{name} both indexed and dead-lettered"
        assert row["error"], name
        got[name] = f"dead:{row['stage']}"
    return got


def table(out: Path, name: str) -> list[dict]:
    return ds.dataset(out / name, format="parquet", partitioning="hive").to_table().to_pylist()


def test_index_job_accounts_for_every_bad_video(corpus: Corpus, runs: dict):
    got = index_outcomes(runs["index"], runs["manifest"])
    for kind in corpus.videos:
        print(f"  {kind.kind:48s} {got.get(kind.name, 'MISSING')}")
    assert set(got) == {k.name for k in corpus.videos}  # nothing lost, nothing extra
    wrong = {k.name: got[k.name] for k in corpus.videos if got[k.name] not in k.expect}
    assert not wrong
    record = runs["index_record"]
    assert record.n_inputs == len(corpus.videos)  # the symlink loops are not files
    assert record.n_inputs == record.n_videos + record.n_unchanged + record.n_dead_letters
    assert outcome(record) == EXIT_PARTIAL


def test_match_job_accounts_for_every_bad_image(corpus: Corpus, runs: dict):
    queries = table(runs["out"], "queries")
    dead = {Path(d["uri"]).name: d for d in table(runs["out"], "dead_letter")}
    names = [Path(q["query_uri"]).name for q in queries]
    assert sorted(names) == sorted(k.name for k in corpus.pictures)  # each exactly once
    got = {}
    for q in queries:
        name = Path(q["query_uri"]).name
        got[name] = f"dead:{dead[name]['stage']}" if q["status"] == "failed" else q["status"]
        assert (q["status"] == "failed") == (name in dead)
    for kind in corpus.pictures:
        print(f"  {kind.kind:48s} {got[kind.name]}")
    assert not {k.name: got[k.name] for k in corpus.pictures if got[k.name] not in k.expect}
    assert len(dead) == runs["match_record"].n_dead_letters
    assert outcome(runs["match_record"]) == EXIT_PARTIAL


def test_canary_outside_the_inputs_is_never_read(corpus: Corpus, runs: dict):
    """No index row carries a frame of the canary that every bait points at."""
    manifest = runs["manifest"]
    videos = live_videos(str(runs["index"]), manifest)
    frames = live_frames(str(runs["index"]), manifest, videos)
    whole = frames.filter(frames.column("region").to_numpy() == 0)
    index_keys = np.stack([np.frombuffer(k, np.uint8) for k in whole.column("key").to_pylist()])
    info = decode.probe(str(corpus.canary))
    thumbs = np.concatenate([b.thumbs for b in decode.decode_frames(
        str(corpus.canary), picture=reference_size(info.width, info.height))])
    canary_keys = hashes.phash256_regions(thumbs, [preprocess.FULL])[0]
    nearest = min(int(hashes.hamming(index_keys, key[None]).min()) for key in canary_keys)
    print(f"canary frames: {len(canary_keys)}, nearest index row: {nearest} bits")
    assert nearest > 64
    assert not any("canary" in (v or "") for v in videos.column("uri").to_pylist())


def test_damaged_files_are_the_same_bytes_on_every_build(corpus: Corpus, archive: list[Path],
                                                       tmp_path: Path):
    """The damaged files' expected outcomes hold for these bytes: a rebuild (on a machine
    as busy as it likes) must give the same bytes, else the expectation is a coin toss."""
    good = archive[0]
    frame = grab_frame(good, 1.0)
    again = make_corpus(tmp_path / "again", good, frame)
    damaged = [k.name for k in corpus.videos if k.name.startswith(("bitflip", "truncated"))]
    assert len(damaged) == 7
    for name in damaged:
        assert (again.archive / name).read_bytes() == (corpus.archive / name).read_bytes(), name
    assert {k.name: k.expect for k in again.videos} == {k.name: k.expect for k in corpus.videos}


def test_memory_bound_fails_one_file_not_the_worker(tmp_path: Path):
    """A 16000x16000 picture in a 3 MB file: under a tight address-space limit FFmpeg's
    allocation fails and the file is reported, under the default limit it decodes."""
    path = big_picture_video(tmp_path / "big.mkv")
    with pytest.raises(decode.DecodeError) as failed:
        list(decode.decode_frames(str(path), picture=(320, 320), max_memory_mb=500))
    assert failed.value.stage == "decode" and failed.value.frames == 0
    assert sum(len(b.pts) for b in decode.decode_frames(str(path), picture=(320, 320))) == 1
