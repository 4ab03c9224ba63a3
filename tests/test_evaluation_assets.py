"""The evaluation assets are what every quality number rests on, so they are tested for real:
real FFmpeg builds, ffprobe durations, frames decoded independently of the seek path.

``archive`` is conftest's session fixture: the cached "test" profile archive.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation import footage
from evaluation.edits import EDITS, grab_frame, make_queries
from evaluation.footage import (
    DEGENERATE_KINDS,
    build_archive,
    data_files,
    distractor_photos,
    ensure_archive,
    load_truth,
    probe,
)


@pytest.fixture(scope="module")
def frame(archive: list[Path]) -> Image.Image:
    reel = archive[0]
    shot = next(s for s in load_truth(reel)["shots"] if not s["degenerate"])
    return grab_frame(reel, (shot["t_start"] + shot["t_end"]) / 2)


@pytest.fixture
def tiny_test_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the "test" profile so tests of building and caching take a second, not ten."""
    tiny = replace(
        footage.PROFILES["test"],
        size=(160, 90),
        seconds_per_shot=1.0,
        clips=("carphone_pristine.mp4",),
    )
    monkeypatch.setitem(footage.PROFILES, "test", tiny)


def decode_frame(video: Path, index: int) -> np.ndarray:
    """Frame ``index`` by decoding from the start and counting: no seeking involved."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(video),
            "-vf",
            f"select=eq(n\\,{index})",
            "-fps_mode",
            "passthrough",
            "-frames:v",
            "1",
            "-pix_fmt",
            "rgb24",
            "-f",
            "rawvideo",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    width, height = load_truth(video)["size"]
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def test_data_files_are_installed_package_files() -> None:
    files = data_files()
    assert {"bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"} <= files.keys()
    assert all(path.is_file() and "site-packages" in path.parts for path in files.values())


def test_archive_matches_its_truth(archive: list[Path]) -> None:
    names = [video.name for video in archive]
    assert names == ["reel_00.mp4", "reel_01.mp4", "bikes.mp4", "bigbuckbunny.mp4", "carphone.mp4"]
    assert sum(video.stat().st_size for video in archive) < 15e6
    for video in archive:
        truth, info = load_truth(video), probe(video)
        assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
        assert info["frames"] == truth["frames"]
        shots = truth["shots"]
        assert shots[0]["t_start"] == 0
        assert all(a["t_end"] == b["t_start"] for a, b in zip(shots, shots[1:], strict=False))
        assert shots[-1]["t_end"] == pytest.approx(truth["frames"] / truth["fps"], abs=1e-5)
        assert info["duration"] == pytest.approx(shots[-1]["t_end"], abs=1.5 / truth["fps"])
        if truth["source"] == "synthesised":
            assert truth["size"] == [640, 360] and truth["fps"] == 25
            assert 40 <= info["duration"] <= 70
            assert {"title", "fade_out", "black"} <= {s["kind"] for s in shots}
            assert all(s["degenerate"] == (s["kind"] in DEGENERATE_KINDS) for s in shots)
    assert load_truth(archive[-1])["fps"] == pytest.approx(30000 / 1001)


def test_distractors_are_in_no_archive(archive: list[Path]) -> None:
    used = {s["photo"] for video in archive for s in load_truth(video)["shots"]} - {None}
    distractors = {path.name for path in distractor_photos()}
    assert used and distractors and not used & distractors


def digests(videos: list[Path]) -> list[str]:
    return [hashlib.sha256(video.read_bytes()).hexdigest() for video in videos]


@pytest.mark.usefixtures("tiny_test_profile")
def test_ensure_archive_caches_and_rebuilds_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_archive(tmp_path, "test")
    stamps = [video.stat().st_mtime_ns for video in first]
    built = digests(first)
    assert [v.stat().st_mtime_ns for v in ensure_archive(tmp_path, "test")] == stamps

    monkeypatch.setattr(footage, "ARCHIVE_VERSION", footage.ARCHIVE_VERSION + 1)
    rebuilt = ensure_archive(tmp_path, "test")
    assert rebuilt == first and [v.stat().st_mtime_ns for v in rebuilt] != stamps
    assert digests(rebuilt) == built  # same recipe, same seed: same bytes
    assert not list(tmp_path.glob(".test-*/"))  # no staging directory left behind

    other_seed = ensure_archive(tmp_path, "test", seed=1)
    assert load_truth(other_seed[0])["shots"] != load_truth(first[0])["shots"]


@pytest.mark.usefixtures("tiny_test_profile")
def test_build_archive_overrides_the_profile(tmp_path: Path) -> None:
    *_, reel, clip = build_archive(tmp_path, size=(128, 72), fps=10, seconds_per_shot=1.5)
    truth = load_truth(reel)
    assert (truth["size"], truth["fps"]) == ([128, 72], 10)
    assert truth["frames"] == 10 * (3 + 5 * 1.5 + 1)  # title, 5 shots, black gap
    assert load_truth(clip)["size"] == [88, 72]  # shrunk to fit, aspect kept
    assert load_truth(clip)["fps"] == pytest.approx(30000 / 1001)  # clips keep their rate


def test_grab_frame_returns_the_frame_at_ts(archive: list[Path]) -> None:
    reel, carphone = archive[0], archive[-1]
    truth = load_truth(reel)
    fps = truth["fps"]
    cut = next(s for s in truth["shots"][2:] if not s["degenerate"])  # first frame after a cut
    moving = next(s for s in truth["shots"] if s["kind"] not in DEGENERATE_KINDS | {"still"})
    cases = [
        (reel, round(cut["t_start"] * fps)),
        (reel, round((moving["t_start"] + moving["t_end"]) / 2 * fps)),
        (carphone, 76),  # 29.97 fps: k / fps is not a whole number of microseconds
    ]
    for video, k in cases:
        grabbed = np.asarray(grab_frame(video, k / load_truth(video)["fps"]))
        assert grabbed.shape[:2] == tuple(reversed(load_truth(video)["size"]))
        assert np.array_equal(grabbed, decode_frame(video, k))
        assert not np.array_equal(grabbed, decode_frame(video, k - 1))


def test_grab_frame_past_the_end_fails(archive: list[Path]) -> None:
    with pytest.raises(ValueError):
        grab_frame(archive[-1], 60.0)


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edit_is_deterministic_and_changes_the_image(name: str, frame: Image.Image) -> None:
    first = EDITS[name](frame, random.Random(7))
    again = EDITS[name](frame, random.Random(7))
    assert (first.size, first.mode, first.tobytes()) == (again.size, again.mode, again.tobytes())
    assert first.size != frame.size or first.tobytes() != frame.tobytes()


def test_make_queries_labels_and_determinism(archive: list[Path], tmp_path: Path) -> None:
    videos = [archive[0], archive[-1]]
    truth = {video: load_truth(video) for video in videos}
    labels = make_queries(videos, truth, tmp_path / "a", per_video=2, seed=5)
    assert labels == json.loads((tmp_path / "a" / "labels.json").read_text())
    degenerate = [label for label in labels if label["degenerate"]]
    assert {label["kind"] for label in degenerate} == {"title", "fade_out", "black"}
    assert len(labels) - len(degenerate) == 4
    for label in labels:
        shots = truth[next(v for v in videos if v.name == label["video"])]["shots"]
        shot = next(s for s in shots if s["t_start"] <= label["ts"] < s["t_end"])
        assert (shot["kind"], shot["photo"]) == (label["kind"], label["photo"])
        assert label["edit"] in EDITS and (tmp_path / "a" / label["image"]).is_file()
    again = make_queries(videos, truth, tmp_path / "b", per_video=2, seed=5)
    assert again == labels
    for label in labels:
        a, b = (tmp_path / d / label["image"] for d in "ab")
        assert a.read_bytes() == b.read_bytes()
