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


# ---- the exam's footage, sets and clips (evaluation.reels / sets / clips) ----------------

from evaluation import clips, reels, sets  # noqa: E402
from evaluation.edits import EXAM_EDITS, crop_asymmetric  # noqa: E402


@pytest.fixture(scope="module")
def mini_reels() -> dict[str, list[Path]]:
    """A miniature of the exam's footage: the same recipes at 320x180, shots at 1/4 length."""
    return {split: reels.ensure_reels(split, size=(320, 180), time_scale=0.25)
            for split in ("report", "calibration", "heldout_report", "heldout_calibration")}


def _grey(video: Path, ts: float) -> np.ndarray:
    return np.asarray(grab_frame(video, ts).convert("L"), dtype=np.float32)


def test_reels_match_their_truth(mini_reels: dict[str, list[Path]]) -> None:
    styles = set()
    for video in mini_reels["report"]:
        truth, info = reels.load_truth(video), probe(video)
        assert info["frames"] == truth["frames"] and info["codec"] == "h264"
        shots = truth["shots"]
        assert shots[0]["t_start"] == 0
        assert all(a["t_end"] == b["t_start"] for a, b in zip(shots, shots[1:], strict=False))
        assert shots[-1]["t_end"] == pytest.approx(truth["frames"] / truth["fps"], abs=1e-5)
        styles |= {s["kind"] for s in shots}
    assert styles == {"title", "pan", "zoom", "black", "hold", "street", "night", "slide",
                      "fade_in", "fade_out", "animation", "real_pan", "static_camera"}


def test_repeats_and_holds_show_the_same_picture_and_pans_do_not(
        mini_reels: dict[str, list[Path]]) -> None:
    holds = next(v for v in mini_reels["report"] if v.name == "holds.mp4")
    truth = reels.load_truth(holds)
    first, second = [s for s in truth["shots"] if s["take"]]
    moment = (first["t_start"] + first["t_end"]) / 2
    copies = reels.equivalent_moments(truth, moment)
    assert len(copies) == 2 and copies[0] == (round(moment, 6),) * 2
    assert second["t_start"] <= copies[1][0] < second["t_end"]
    a, b = (_grey(holds, t) for t, _ in copies)
    later = _grey(holds, moment + 1.0)
    assert np.abs(a - b).mean() < 0.3 * np.abs(a - later).mean()  # the same frame twice
    assert reels.equivalent_moments(truth, copies[1][0]) == copies
    hold = next(s for s in truth["shots"] if s["hold"])
    h1, h2 = _grey(holds, hold["t_start"] + 0.1), _grey(holds, hold["t_end"] - 0.1)
    assert np.abs(h1 - h2).mean() < 0.4 * np.abs(a - later).mean()  # only grain moves
    (interval,) = reels.equivalent_moments(truth, hold["t_start"] + 0.5)
    assert interval == (hold["t_start"], round(hold["t_end"] - 1 / truth["fps"], 6))


def test_street_camera_moves_only_a_little(mini_reels: dict[str, list[Path]]) -> None:
    street = next(v for v in mini_reels["report"] if v.name == "street.mp4")
    moved = np.abs(_grey(street, 1.0) - _grey(street, 2.5)) > 40
    assert 0.001 < moved.mean() < 0.05  # a few small things, not the scene


def test_splits_use_disjoint_pictures() -> None:
    def photos(split: str) -> set[str]:
        return {s.photo for r in reels.plan(split) for s in r.shots if s.photo}

    report, calibration = photos("report"), photos("calibration")
    assert report == set(reels.REPORT_PHOTOS) and calibration == set(reels.CALIBRATION_PHOTOS)
    assert not report & calibration
    assert photos("heldout_report") <= calibration and photos("heldout_calibration") <= report
    distractors = {p for ps in reels.DISTRACTOR_PHOTOS.values() for p in ps}
    assert not distractors & (report | calibration)
    assert not photos("padding") & (calibration | distractors)  # nothing of the negatives
    assert {r.clip for r in reels.plan("report") if r.clip} == set(reels.REAL_CLIPS)
    for split in ("report", "calibration"):  # one video per picture: the right video is clear
        owners = [(s.photo, r.name) for r in reels.plan(split) for s in r.shots if s.photo]
        assert len(set(owners)) == len({photo for photo, _ in owners})


def test_moment_sets_are_uniform_unflat_deterministic(mini_reels: dict[str, list[Path]],
                                                      tmp_path: Path) -> None:
    videos = mini_reels["report"]
    edits = {name: EXAM_EDITS[name] for name in ("mirror", "crop10_asym")}
    labels = sets.moment_set(videos, tmp_path / "a", 10, 3, edits, "report")
    by_moment: dict[str, list[dict]] = {}
    for label in labels:
        by_moment.setdefault(label["moment"], []).append(label)
        assert any(a - 1e-6 <= label["ts"] <= b + 1e-6 for a, b in label["truth"])
    assert all({lb["edit"] for lb in group} == set(edits) for group in by_moment.values())
    per_video = {v.name: sum(1 for g in by_moment.values() if g[0]["video"] == v.name)
                 for v in videos}
    assert min(per_video.values()) >= sets.MIN_PER_VIDEO
    for group in by_moment.values():
        label = group[0]
        video = next(v for v in videos if v.name == label["video"])
        truth = reels.load_truth(video)
        assert not reels.segment_at(truth, label["ts"])["degenerate"]
        assert abs(label["ts"] * truth["fps"] - round(label["ts"] * truth["fps"])) < 1e-6
        grabbed = grab_frame(video, label["ts"])
        assert reels.frame_contrast(grabbed) >= sets.MIN_CONTRAST
        if label["hold"]:
            assert label["truth"][0][1] > label["truth"][0][0]
    again = sets.moment_set(videos, tmp_path / "b", 10, 3, edits, "report")
    assert again == labels
    sample = labels[len(labels) // 2]["image"]
    assert (tmp_path / "a" / sample).read_bytes() == (tmp_path / "b" / sample).read_bytes()
    stamp = (tmp_path / "a" / "labels.json").stat().st_mtime_ns
    assert sets.moment_set(videos, tmp_path / "a", 10, 3, edits, "report") == labels
    assert (tmp_path / "a" / "labels.json").stat().st_mtime_ns == stamp  # cached


def test_distractor_sets_have_every_kind(mini_reels: dict[str, list[Path]],
                                         tmp_path: Path) -> None:
    edits = {name: EXAM_EDITS[name] for name in ("jpeg_resize", "pad_square")}
    counts = {"heldout": 4, "title_card": 3, "near_uniform": 3, "night": 3}
    labels = sets.distractor_set(tmp_path, 1, ["brick.png"], mini_reels["heldout_report"],
                                 edits, counts, {"ARCHIVE REEL 01"}, "report")
    kinds = [lb["kind"] for lb in labels]
    assert {k: kinds.count(k) for k in set(kinds)} == {"photo": 3, **counts}
    assert all(lb["video"] is None and (tmp_path / lb["image"]).is_file() for lb in labels)
    flat = [lb for lb in labels if lb["kind"] == "near_uniform" and lb["edit"] != "pad_square"]
    assert all(reels.frame_contrast(Image.open(tmp_path / lb["image"])) < 30 for lb in flat)


def test_crop_asymmetric_cuts_about_a_tenth_off_centre() -> None:
    ramp = np.zeros((200, 250, 3), np.uint8)  # each pixel says where it was
    ramp[..., 0] = np.arange(250)[None, :]
    ramp[..., 1] = np.arange(200)[:, None]
    image = Image.fromarray(ramp)
    off_centre = 0
    for seed in range(20):
        out = crop_asymmetric(image, random.Random(seed))
        assert 0.87 <= out.width / 250 <= 0.93 and 0.87 <= out.height / 200 <= 0.93
        left, top = out.getpixel((0, 0))[:2]
        right = 250 - out.width - left
        off_centre += abs(left - right) > 0.04 * 250
        assert out.getpixel((out.width - 1, out.height - 1))[:2] == (
            left + out.width - 1, top + out.height - 1)
    assert off_centre >= 10  # mostly shifted, not centred


def test_clip_sets_carry_their_offsets(mini_reels: dict[str, list[Path]],
                                       tmp_path: Path) -> None:
    videos = [v for v in mini_reels["report"] if v.name in ("pans.mp4", "holds.mp4")]
    labels = clips.clip_set(videos, mini_reels["heldout_report"], tmp_path, per_edit=1, seed=2,
                            compilations=1, distractors=1)
    edits = {lb["edit"] for lb in labels if lb["segments"]}
    assert edits == {*clips.CLIP_EDITS, "compilation"}
    assert sum(1 for lb in labels if not lb["segments"]) == 1
    for label in labels:
        info = probe(tmp_path / label["clip"])
        assert info["frames"] / info["fps"] == pytest.approx(label["duration"], abs=0.25)
    mirrored = next(lb for lb in labels if lb["edit"] == "mirror")
    (segment,) = mirrored["segments"]
    source = next(v for v in videos if v.name == segment["video"])
    offset = segment["offsets"][0][0]
    first = np.asarray(grab_frame(tmp_path / mirrored["clip"], 0).convert("L"), np.float32)
    if segment["offsets"][0][0] == segment["offsets"][0][1]:  # an exact offset
        assert np.abs(first[:, ::-1] - _grey(source, offset)).mean() < 6
    compiled = next(lb for lb in labels if lb["edit"] == "compilation")
    one, two = compiled["segments"]
    assert one["video"] != two["video"] and two["query_start"] == one["query_end"]
    trimmed = next(lb for lb in labels if lb["edit"] == "trim_start")
    start = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=start_time",
                            "-of", "csv=p=0", str(tmp_path / trimmed["clip"])],
                           capture_output=True, text=True, check=True).stdout
    assert float(start) > 0.4  # its timestamps do not start at 0; clip time does
