"""Evaluation sets from any folder of videos and any folder of photos.

Source-bearing queries: times drawn uniformly over each video (not only keyframes or shot
starts), flat frames (fades, black gaps) redrawn, the frame grabbed and edited with the
project's edit generator, dealt round-robin so each edit is used about equally.
Distractors: photos that are no archive's source (as they are and edited), and edited
frames of held-out videos. Everything is deterministic given the seed.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.edits import EDITS, grab_frame
from transforms.media.decode import probe
from transforms.media.preprocess import FLAT_STD

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".ts", ".m4v"}
PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def _grab_unflat(video: Path, rng: random.Random, start: float, duration: float,
                 tries: int = 6) -> tuple[float, Image.Image] | None:
    for _ in range(tries):
        ts = round(start + rng.uniform(0.0, max(duration - 0.2, 0.0)), 3)
        frame = grab_frame(video, ts)
        if np.asarray(frame.convert("L"), dtype=np.float32).std() >= FLAT_STD:
            return ts, frame
    return None


def make_set(videos: list[Path], out: Path, per_video: int, seed: int, kind: str,
             edits: list[str] | None = None) -> list[dict]:
    """Edited grabs of ``videos`` into ``out``; labels with ``video`` set when ``kind`` is
    'source', None when it is 'distractor' (frames of held-out videos). Cached by a stamp."""
    stamp = {"videos": [str(v) for v in videos], "per_video": per_video, "seed": seed,
             "kind": kind, "edits": edits}
    labels_path = out / "labels.json"
    if labels_path.exists():
        cached = json.loads(labels_path.read_text())
        if cached["stamp"] == stamp:
            return cached["labels"]
    out.mkdir(parents=True, exist_ok=True)
    names = list(edits or EDITS)
    rng = random.Random(f"{kind}:{seed}")
    order = rng.sample(names, len(names))
    jobs = []
    for video in videos:
        info = probe(str(video))
        for i in range(per_video):
            jobs.append((video, info.start_time, info.duration, order[len(jobs) % len(order)],
                         random.Random(f"{kind}:{seed}:{video.name}:{i}")))

    def work(job: tuple) -> dict | None:
        video, start, duration, edit, job_rng = job
        grabbed = _grab_unflat(video, job_rng, start, duration)
        if grabbed is None:
            return None
        ts, frame = grabbed
        image = f"{kind}_{video.stem}_{ts:09.3f}_{edit}.png"
        EDITS[edit](frame, job_rng).save(out / image)
        return {"image": image, "video": video.name if kind == "source" else None,
                "ts": ts if kind == "source" else None, "edit": edit, "kind": kind}

    with ThreadPoolExecutor(max_workers=2) as pool:
        labels = [label for label in pool.map(work, jobs) if label]
    labels_path.write_text(json.dumps({"stamp": stamp, "labels": labels}, indent=1))
    return labels


def photo_distractors(photos: list[Path], out: Path, seed: int) -> list[dict]:
    """Each photo as it is and under every edit: real pictures that are in no video."""
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    for photo in photos:
        picture = Image.open(photo).convert("RGB")
        for edit in ["none", *EDITS]:
            image = f"photo_{photo.stem}_{edit}.png"
            edited = picture if edit == "none" else EDITS[edit](
                picture, random.Random(f"photo:{seed}:{photo.name}:{edit}"))
            edited.save(out / image)
            labels.append({"image": image, "video": None, "ts": None, "edit": edit,
                           "kind": "distractor"})
    return labels
