"""The sharded index: packing, the equality of sharded and single-shard answers, the
per-process shard cache, and rows retired by later batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from evaluation.edits import make_queries
from evaluation.footage import distractor_photos, load_truth
from pipelines import index, match
from pipelines.commands import index_admin
from schemas.records import ShardRecord
from tests.conftest import EMBEDDED, build_once
from transforms.index.batches import pack_shards
from transforms.index.store import load_manifest
from transforms.search.shards import Shard, ShardCache, live_shards

SMALL_SHARDS = "1200"  # the test archive's per-video files hold 500-1900 key rows each


def test_pack_shards_keeps_order_and_the_bound() -> None:
    files = [("a", 500), ("b", 600), ("c", 0), ("d", 2500), ("e", 100), ("f", 1000)]
    assert pack_shards(files, 1200) == [
        ShardRecord(0, 1100, ["a", "b"]), ShardRecord(1, 2500, ["d"]),  # too big: alone
        ShardRecord(2, 1100, ["e", "f"])]
    assert pack_shards([], 1200) == []


@pytest.fixture(scope="session")
def sharded_index(archive_list: Path, shared_dir: Path) -> Path:
    """The test archive indexed with shards small enough to split it several ways."""
    directory = shared_dir / "sharded_index"
    build_once(directory, lambda d: index.run(
        ["--archive", str(archive_list), "--index", str(d), "--shard_rows", SMALL_SHARDS,
         *EMBEDDED]))
    return directory


@pytest.fixture(scope="session")
def posted(archive: list[Path], shared_dir: Path) -> Path:
    """Edited screengrabs of every edit (rotations and crops exercise the rescue path) and
    photos that are in no video."""
    directory = shared_dir / "shard_queries"

    def build(d: Path) -> None:
        make_queries(archive, {v: load_truth(v) for v in archive}, d / "images", 3, seed=11)
        (d / "images" / "labels.json").rename(d / "labels.json")
        for photo in distractor_photos()[:3]:
            shutil.copy(photo, d / "images" / f"distractor_{photo.name}")

    build_once(directory, build)
    return directory / "images"


def rows(out: Path, table: str) -> list[tuple]:
    found = ds.dataset(out / table, format="parquet", partitioning="hive").to_table()
    found = found.drop([c for c in ("run_id", "run_date") if c in found.column_names])
    return sorted(tuple(str(v) for v in row.values()) for row in found.to_pylist())


@pytest.mark.parametrize("mode", [["--fast"], []], ids=["hashes", "verify"])
def test_sharded_and_single_shard_indexes_give_the_same_rows(
        index_dir: Path, sharded_index: Path, posted: Path, tmp_path: Path,
        mode: list[str]) -> None:
    assert load_manifest(str(index_dir)).partitions[0].shards == 1
    assert load_manifest(str(sharded_index)).partitions[0].shards >= 4
    images = str(posted)
    outs = []
    for name, idx in (("single", index_dir), ("sharded", sharded_index)):
        out = tmp_path / name
        match.run(["--index", str(idx), "--images", images, "--out", str(out),
                   "--run_id", "s", *mode, *EMBEDDED])
        outs.append(out)
    single, sharded = outs
    for table in ("queries", "matches", "dead_letter"):
        assert rows(single, table) == rows(sharded, table), table
    assert len(rows(single, "matches")) > 10


def test_shard_cache_is_bounded_and_shared(sharded_index: Path) -> None:
    refs = live_shards(str(sharded_index), load_manifest(str(sharded_index)))
    cache, loaded = ShardCache(), []

    def load(ref):
        loaded.append(ref.name)
        return Shard.load(ref, "phash256")

    one = cache.get(refs[0], 1 << 40, load)
    assert cache.get(refs[0], 1 << 40, load) is one and loaded == [refs[0].name]
    bound = one.nbytes + 1  # room for about one shard: each new one pushes the oldest out
    for ref in refs[1:]:
        cache.get(ref, bound, load)
        assert cache.holds(ref) and not cache.holds(refs[0])
        assert cache.nbytes <= max(bound, max(s.nbytes for s in cache._shards.values()))
    assert loaded == [r.name for r in refs]


def test_retired_videos_are_not_searched_until_rolled_back(
        sharded_index: Path, tmp_path: Path) -> None:
    idx = tmp_path / "index"
    shutil.copytree(sharded_index, idx)
    before = load_manifest(str(idx))
    refs = live_shards(str(idx), before)
    shards = [Shard.load(ref, before.key_hasher) for ref in refs]
    video = next(iter(shards[0].videos.values()))
    index_admin.tombstone(str(idx), video["uri"], "test")
    after = load_manifest(str(idx))
    assert after.partitions[-1].tombstoned == [video["video_id"]]
    for ref in live_shards(str(idx), after):
        shard = Shard.load(ref, after.key_hasher)
        assert video["video_id"] not in set(np.unique(shard.video_id).tolist())
    index_admin.roll_back(str(idx), before.version)
    again = [Shard.load(ref, before.key_hasher)
             for ref in live_shards(str(idx), load_manifest(str(idx)))]
    assert sum(len(s.video_id) for s in again) == sum(len(s.video_id) for s in shards)
