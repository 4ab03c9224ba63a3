"""transforms.media.decode against real FFmpeg on generated clips: true pts, exact segments, damaged
and hostile inputs, timeouts without leftover processes."""

from __future__ import annotations

import glob
import json
import math
import os
import pickle
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transforms.media.decode import (
    DecodeError,
    VideoInfo,
    decode_frames,
    decode_rgb,
    plan_segments,
    probe,
)
from transforms.media.preprocess import THUMB_SIZE


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True
    )


def _testsrc(seconds: float, size: str = "320x240") -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-t", str(seconds)]


_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def vfr_clip(clip_dir: Path) -> Path:
    """Irregular frame intervals (millisecond jitter), B-frames, stream starting at 3.5 s."""
    path = clip_dir / "vfr.mp4"
    jitter = "settb=1/1000,setpts='(N*40+mod(N*N*7\\,23))/1000/TB'"
    _ffmpeg(*_testsrc(6), "-vf", jitter, *_X264, "-bf", "3", "-g", "30",
            "-fps_mode", "passthrough", "-enc_time_base", "1:1000",
            "-output_ts_offset", "3.5", str(path))  # fmt: skip
    return path


@pytest.fixture(scope="session")
def plain_clip(clip_dir: Path) -> Path:
    path = clip_dir / "plain.mp4"
    _ffmpeg(*_testsrc(4), *_X264, "-g", "25", str(path))
    return path


def _ffprobe_pts(path: Path) -> np.ndarray:
    """Every frame's best-effort timestamp in seconds, exactly as FFmpeg's integers give it."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-of", "json",
         "-show_entries", "frame=best_effort_timestamp:stream=time_base,has_b_frames", str(path)],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    found = json.loads(out)
    num, den = map(int, found["streams"][0]["time_base"].split("/"))
    assert found["streams"][0]["has_b_frames"] > 0
    return np.array([f["best_effort_timestamp"] * num / den for f in found["frames"]])


PICTURE = (160, 120)


def _frames(path: Path, *segment: float | None, **kwargs):
    """decode_frames with a small picture size, unless the test asks for another."""
    return decode_frames(str(path), *segment, **{"picture": PICTURE, **kwargs})


def _decode_all(path: Path, *segment: float | None, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(pts, thumbnails with their pictures beside them, as one array per frame)."""
    batches = list(_frames(path, *segment, **kwargs))
    if not batches:
        return np.empty(0), np.empty((0, THUMB_SIZE, THUMB_SIZE + PICTURE[0]), np.uint8)
    return (np.concatenate([b.pts for b in batches]),
            np.concatenate([np.concatenate([b.thumbs[:, :PICTURE[1]], b.pictures()], axis=2)
                            for b in batches]))


def _children() -> set[int]:
    """Our child processes, zombies included (a zombie stays a child until it is reaped)."""
    kids: set[int] = set()
    for listing in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        kids.update(int(pid) for pid in Path(listing).read_text().split())
    return kids


def test_probe_reads_the_video_stream(vfr_clip: Path) -> None:
    info = probe(str(vfr_clip))
    assert (info.start_time, info.width, info.height, info.codec) == (3.5, 320, 240, "h264")
    assert 5.9 < info.duration < 6.1


def test_pts_are_ffprobes_on_vfr_with_offset_and_b_frames(vfr_clip: Path) -> None:
    expected = _ffprobe_pts(vfr_clip)
    assert len(np.unique(np.round(np.diff(expected), 6))) > 5  # the clip really is VFR
    pts, frames = _decode_all(vfr_clip)
    assert pts.dtype == np.float64 and frames.dtype == np.uint8
    assert frames.shape == (len(expected), PICTURE[1], THUMB_SIZE + PICTURE[0])
    np.testing.assert_array_equal(pts, expected)
    assert pts[0] == 3.5


def test_batches_and_sizes(vfr_clip: Path) -> None:
    batches = list(_frames(vfr_clip, batch=7))
    assert all(len(b.pts) == len(b.thumbs) == len(b.limited) <= 7 for b in batches)
    assert batches[0].thumbs.shape[1:] == (THUMB_SIZE, THUMB_SIZE)
    assert batches[0].pictures().shape[1:] == (PICTURE[1], PICTURE[0])
    assert sum(len(b.pts) for b in batches) == len(_ffprobe_pts(vfr_clip))
    wide = next(decode_frames(str(vfr_clip), picture=(320, 100)))  # thumbnail below it
    assert wide.thumbs.shape[1:] == (THUMB_SIZE, THUMB_SIZE)
    assert wide.pictures().shape[1:] == (100, 320)


def test_pictures_and_thumbnails_are_the_frame_in_full_range_grey(vfr_clip: Path) -> None:
    """Grey pictures and thumbnails of one decode are the frame's full-range luma area-scaled:
    what FFmpeg's own grey output gives, and the thumbnail is the picture area-scaled."""
    size = (320, 240)  # the clip's own size: the picture is the frame itself
    batch = next(decode_frames(str(vfr_clip), picture=size, batch=10))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(vfr_clip), "-frames:v", "10",
                          "-vf", "format=gray", "-fps_mode", "passthrough", "-f", "rawvideo", "-"],
                         check=True, capture_output=True).stdout
    grey = np.frombuffer(raw, np.uint8).reshape(10, 240, 320)
    pictures = batch.pictures()
    assert np.abs(pictures.astype(int) - grey).max() <= 1  # rounding of the range only
    assert pictures.min() < 30 and pictures.max() > 225  # full range, not 16..235
    from_picture = np.stack([np.asarray(Image.fromarray(p).resize(
        (THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)) for p in pictures])
    assert np.abs(batch.thumbs.astype(int) - from_picture).mean() < 1.0


def test_rgb_frames_are_the_whole_frame(vfr_clip: Path) -> None:
    pts, rgb = next(decode_rgb(str(vfr_clip), size=(320, 240), batch=5))
    assert rgb.shape == (5, 240, 320, 3) and rgb.std() > 10
    np.testing.assert_array_equal(pts, _ffprobe_pts(vfr_clip)[:5])


def test_segment_keeps_its_interval_only(vfr_clip: Path) -> None:
    everything, frames = _decode_all(vfr_clip)
    start, end = everything[40], everything[90]  # boundaries exactly on frames
    pts, part = _decode_all(vfr_clip, start, end)
    np.testing.assert_array_equal(pts, everything[40:90])
    np.testing.assert_array_equal(part, frames[40:90])


def test_plan_segments() -> None:
    info = VideoInfo(start_time=3.5, duration=60.0, width=1, height=1, codec="h264")
    plan = plan_segments(info, 10)
    assert plan[0] == (-math.inf, 13.5) and plan[-1] == (53.5, math.inf)
    thirds = plan_segments(VideoInfo(0.0, 25.0, 1, 1, "h264"), 10)  # 3 equal pieces, not 10+10+5
    assert [round(b, 9) for _, b in thirds[:-1]] == [round(25 / 3, 9), round(50 / 3, 9)]
    assert len(plan) == 6 and all(a[1] == b[0] for a, b in zip(plan, plan[1:], strict=False))
    assert plan_segments(VideoInfo(0.0, 0.0, 1, 1, "h264"), 10) == [(-math.inf, math.inf)]
    with pytest.raises(ValueError):
        plan_segments(info, 0)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("long-gop.mp4", ["-g", "250", "-bf", "3"]),  # keyframes rarely on segment bounds
        ("short-gop.mp4", ["-g", "12", "-bf", "2"]),
        ("open-gop.mkv", ["-g", "48", "-bf", "3", "-x264-params", "open-gop=1"]),
        ("offset.ts", ["-g", "50"]),  # MPEG-TS seeks by bisection, starts at 1.4 s
    ],
)
def test_segments_reassemble_the_whole_decode(
    clip_dir: Path, name: str, options: list[str]
) -> None:
    path = clip_dir / name
    _ffmpeg(*_testsrc(60, "160x120"), *_X264, *options, str(path))
    whole_pts, whole = _decode_all(path)
    assert len(whole_pts) == 1500
    plan = plan_segments(probe(str(path)), 10)
    assert len(plan) == 6
    parts = [_decode_all(path, start, end) for start, end in plan]
    np.testing.assert_array_equal(np.concatenate([p for p, _ in parts]), whole_pts)
    np.testing.assert_array_equal(np.concatenate([f for _, f in parts]), whole)


def _zero_bytes(clip: Path, path: Path) -> None:
    path.write_bytes(b"")


def _text(clip: Path, path: Path) -> None:
    path.write_text("Not a video, just notes someone saved as .mp4\n" * 50)


def _truncated(clip: Path, path: Path) -> None:  # moov atom is at the end: lost
    path.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])


def _audio_only(clip: Path, path: Path) -> None:
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(path))


def _truncated_faststart(clip: Path, path: Path) -> None:  # moov first: half the frames left
    whole = path.with_suffix(".whole.mp4")
    _ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(whole))
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])


def _flipped(clip: Path, path: Path) -> None:
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 5000] = bytes(b ^ 0xFF for b in data[middle : middle + 5000])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "probe_fails", "some_frames"),
    [
        (_zero_bytes, True, False),
        (_text, True, False),
        (_truncated, True, False),
        (_audio_only, True, False),
        (_truncated_faststart, False, True),
        (_flipped, False, True),
    ],
)
def test_damaged_files_raise(
    plain_clip: Path, tmp_path: Path, make, probe_fails: bool, some_frames: bool
) -> None:
    path = tmp_path / "bad.mp4"
    make(plain_clip, path)
    if probe_fails:
        with pytest.raises(DecodeError) as probed:
            probe(str(path))
        assert probed.value.stage == "probe"
    else:
        probe(str(path))
    kept = 0
    with pytest.raises(DecodeError) as decoded:
        for batch in _frames(path):
            kept += len(batch.pts)
    assert decoded.value.stage == "decode" and decoded.value.frames == kept
    assert str(pickle.loads(pickle.dumps(decoded.value))) == str(decoded.value)
    assert (kept > 0) == some_frames
    assert re.search(r"\[(error|fatal)\]", str(decoded.value))  # FFmpeg's words are passed on


def test_timeout_kills_and_reaps(tmp_path: Path) -> None:
    stuck = tmp_path / "stuck.mp4"
    os.mkfifo(stuck)  # opening it blocks forever, like a hung network mount
    before = _children()
    began = time.monotonic()
    with pytest.raises(DecodeError) as decoded:
        next(_frames(stuck, timeout_s=0.5))
    with pytest.raises(DecodeError) as probed:
        probe(str(stuck), timeout_s=0.5)
    assert decoded.value.stage == probed.value.stage == "timeout"
    assert time.monotonic() - began < 5
    assert _children() == before


def test_timeout_on_a_real_decode(clip_dir: Path) -> None:
    path = clip_dir / "big.mkv"
    _ffmpeg(*_testsrc(8, "1280x720"), "-c:v", "mpeg2video", "-q:v", "2", str(path))
    began = time.monotonic()
    with pytest.raises(DecodeError) as decoded:
        _decode_all(path, timeout_s=0.3)
    assert decoded.value.stage == "timeout" and time.monotonic() - began < 3


def test_slow_consumer_does_not_time_out(plain_clip: Path) -> None:
    waited = 0.0
    for _ in _frames(plain_clip, batch=20, timeout_s=1.0):
        time.sleep(0.25)
        waited += 0.25
    assert waited > 1.0


def test_stopping_early_reaps_ffmpeg(plain_clip: Path) -> None:
    before, threads = _children(), threading.active_count()
    frames = _frames(plain_clip, batch=4)
    next(frames)
    assert len(_children()) == len(before) + 1
    frames.close()
    assert _children() == before
    assert threading.active_count() == threads  # stderr reader and timers are gone too


@pytest.fixture(scope="session")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real video outside the inputs, that a hostile input may try to pull in."""
    path = tmp_path_factory.mktemp("secret") / "canary.ts"
    _ffmpeg(*_testsrc(1, "64x48"), *_X264, str(path))
    return path


def _hls(canary: Path, inputs: Path) -> Path:
    path = inputs / "playlist.mp4"
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{canary}\n#EXT-X-ENDLIST\n"
    )
    return path


def _ffconcat(canary: Path, inputs: Path) -> Path:
    path = inputs / "list.mp4"
    path.write_text(f"ffconcat version 1.0\nfile '{canary}'\n")
    return path


@pytest.mark.parametrize("bait", [_hls, _ffconcat])
def test_playlists_cannot_open_other_files(canary: Path, tmp_path: Path, bait) -> None:
    path = bait(canary, tmp_path)
    unguarded = subprocess.run(  # the bait works on an FFmpeg without our whitelists
        ["ffprobe", "-v", "error", "-safe", "0", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert json.loads(unguarded.stdout)["streams"][0]["nb_read_frames"] == "25"
    with pytest.raises(DecodeError) as probed:
        probe(str(path))
    assert probed.value.stage == "probe"
    kept = []
    with pytest.raises(DecodeError) as decoded:
        kept.extend(_frames(path))
    assert decoded.value.stage == "decode" and not kept
    assert "whitelist" in str(decoded.value)
