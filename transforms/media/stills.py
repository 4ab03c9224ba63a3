"""Single archive frames at given presentation times, for people to look at.

The index keeps hashes, not pictures, so a report re-extracts the frames it shows. FFmpeg
gets the same input guards as the decoder (``transforms.media.decode``: file protocol only,
container demuxers only) and the same clock: ``-seek_timestamp`` makes ``-ss`` an absolute
pts, as the index's timestamps are, and the default accurate seek decodes from the keyframe
before and drops frames until the one at ``ts``. The time is floored to the microsecond
(FFmpeg's seek unit), so a frame's own pts lands on that frame rather than the next.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from transforms.io.storage import local_path
from transforms.media.decode import FORMAT_WHITELIST, PROTOCOL_WHITELIST, DecodeError


def extract_frame(path: str, ts: float, width: int = 320, timeout_s: float = 60) -> Image.Image:
    """The first frame of local video ``path`` with pts >= ``ts``, scaled to ``width`` px wide."""
    seek = f"{math.floor(ts * 1e6) / 1e6:.6f}"
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
            "-protocol_whitelist", PROTOCOL_WHITELIST, "-format_whitelist", FORMAT_WHITELIST,
            "-ss", seek, "-seek_timestamp", "1", "-i", "file:" + os.path.abspath(path),
            "-map", "0:V:0", "-frames:v", "1", "-vf", f"scale={width}:-2:flags=area",
            "-c:v", "png", "-f", "image2pipe", "pipe:"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise DecodeError("timeout", f"{path} at {seek} s took over {timeout_s} s") from error
    if done.returncode or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip() or "no frame"
        raise DecodeError("decode", f"{path} at {seek} s: {message.splitlines()[-1]}")
    image = Image.open(io.BytesIO(done.stdout))
    image.load()
    return image.convert("RGB")


def extract_frames(uri: str, times: Iterable[float], width: int = 320,
                   workers: int | None = None) -> dict[float, Image.Image | DecodeError]:
    """Frames of one video (local or ``gs://``, copied once) at each time, or why not.

    FFmpeg runs in ``workers`` parallel processes (default: one per CPU).
    """
    wanted = sorted(set(times))
    with local_path(uri) as path, ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        def one(ts: float) -> Image.Image | DecodeError:
            try:
                return extract_frame(path, ts, width)
            except DecodeError as error:
                return error

        return dict(zip(wanted, pool.map(one, wanted), strict=True))
