"""What a user would otherwise use, measured in the same run as framematch.

- ``phash_1fps``: imagehash's 64-bit pHash of one frame per second, brute-force nearest
  neighbour, no query variants; a match when the nearest frame is within ``PHASH_RADIUS``.
- ``pdq_1fps``: Meta's PDQ (pdqhash, full-resolution pictures) of one frame per second with
  Meta's defaults: distance <= 31 and quality >= 50 on both sides.

Each returns, per query image, its best (video, ts, distance) or None, in the shape the
scorer reads (``ref_uri``, ``ref_ts_s``, ``ref_ts_start_s``, ``ref_ts_end_s``).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image

PHASH_RADIUS = 10  # of 64 bits: a common setting for near-duplicate pHash matching
PDQ_RADIUS = 31  # Meta's defaults
PDQ_MIN_QUALITY = 50


def _geometry(video: Path) -> tuple[int, int, float]:
    """Width, height and start time of a video's first video stream (ffprobe)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height:format=start_time", "-of", "json", str(video)],
        capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    stream = info["streams"][0]
    return stream["width"], stream["height"], float(info["format"].get("start_time") or 0.0)


def frames_at_1fps(video: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """One full-resolution RGB frame per second (FFmpeg's fps filter) and its time."""
    width, height, start = _geometry(video)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-vf", "fps=1", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    size = width * height * 3
    frames = [np.frombuffer(raw[i:i + size], np.uint8).reshape(height, width, 3)
              for i in range(0, len(raw) - size + 1, size)]
    return start + np.arange(len(frames), dtype=np.float64), frames


def phash_bits(rgb: np.ndarray) -> int:
    return int(str(imagehash.phash(Image.fromarray(rgb))), 16)


def pdq_bits(rgb: np.ndarray) -> tuple[int, int]:
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    return int("".join("1" if b else "0" for b in bits), 2), int(quality)


@dataclasses.dataclass
class FramewiseIndex:
    """Hashes of one frame per second of every video, searched by brute force."""

    name: str
    radius: int
    uris: list[str]
    times: np.ndarray
    hashes: list[int]
    hash_image: Callable[[np.ndarray], tuple[int, bool]]

    @classmethod
    def build(cls, name: str, videos: list[Path]) -> FramewiseIndex:
        uris, times, hashes = [], [], []
        for video in videos:
            ts, frames = frames_at_1fps(video)
            for t, rgb in zip(ts, frames, strict=True):
                code, ok = HASHERS[name](rgb)
                if ok:
                    uris.append(str(video))
                    times.append(t)
                    hashes.append(code)
        return cls(name, RADII[name], uris, np.asarray(times), hashes, HASHERS[name])

    def best(self, image: Image.Image) -> dict | None:
        """The nearest indexed frame, if within the radius (and the query is usable)."""
        code, ok = self.hash_image(np.asarray(image.convert("RGB")))
        if not ok or not self.hashes:
            return None
        distances = [(code ^ h).bit_count() for h in self.hashes]
        i = int(np.argmin(distances))
        if distances[i] > self.radius:
            return None
        t = float(self.times[i])
        return {"ref_uri": self.uris[i], "ref_ts_s": t, "ref_ts_start_s": t,
                "ref_ts_end_s": t, "distance": distances[i], "rank": 1}


def _phash(rgb: np.ndarray) -> tuple[int, bool]:
    return phash_bits(rgb), True


def _pdq(rgb: np.ndarray) -> tuple[int, bool]:
    code, quality = pdq_bits(rgb)
    return code, quality >= PDQ_MIN_QUALITY


HASHERS: dict[str, Callable[[np.ndarray], tuple[int, bool]]] = {
    "phash_1fps": _phash, "pdq_1fps": _pdq}
RADII = {"phash_1fps": PHASH_RADIUS, "pdq_1fps": PDQ_RADIUS}
