"""The exam's query sets: edited moments with their truth, and distractors of several kinds.

- **Moments**: times drawn uniformly over each video's content (any frame, not keyframes
  or shot starts; title cards and black gaps excluded), at least ``MIN_PER_VIDEO`` per
  video and otherwise in proportion to its length; a drawn frame that is flat (grey
  standard deviation under ``MIN_CONTRAST``: black, the bottom of a fade) is redrawn. Each
  moment is grabbed once and posted under every edit, so edits are compared on the same
  moments. Its truth is the set of equivalent moments (``reels.equivalent_moments``).
- **Distractors** (pictures in no indexed video; any answer is a false positive), by kind:
  ``photo`` (real photos, as they are and under every edit), ``heldout`` (edited frames of
  held-out reels in the same visual style), ``title_card`` (cards like the archive's, with
  other text), ``near_uniform`` (black, white, grey gradients, blurred to nothing) and
  ``night`` (dark, low-contrast grades of held-out frames and photos).

Nothing here comes from ``transforms``: the flat rule and every constant are the exam's own.
Sets are cached in their folder by a stamp of everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from evaluation import reels
from evaluation.edits import Edit, grab_frame
from evaluation.footage import probe, truth_path

SETS_VERSION = 1
MIN_CONTRAST = 5.0  # grey-level std (0-255) under which a grabbed frame shows nothing
MIN_PER_VIDEO = 2
_TRIES = 20  # redraws of a flat frame before a video's moment is given up

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".ts", ".m4v"}
PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def footage_digest(paths: Sequence[Path]) -> list[str]:
    """Identity of footage for a stamp: name and its truth's (or bytes') digest."""
    out = []
    for path in paths:
        source = truth_path(path) if truth_path(path).is_file() else path
        out.append(f"{path.name}:{hashlib.sha256(source.read_bytes()).hexdigest()[:16]}")
    return out


def _cached(out: Path, stamp: dict, build: Callable[[], list[dict]]) -> list[dict]:
    labels_path = out / "labels.json"
    if labels_path.exists():
        cached = json.loads(labels_path.read_text())
        if cached.get("stamp") == stamp:
            return cached["labels"]
    out.mkdir(parents=True, exist_ok=True)
    labels = build()
    labels_path.write_text(json.dumps({"stamp": stamp, "labels": labels}, indent=1))
    return labels


def truth_or_probe(video: Path) -> dict:
    """A video's truth JSON, or (for footage without one) a single plain segment."""
    if truth_path(video).is_file():
        return reels.load_truth(video)
    info = probe(video)
    end = info["frames"] / info["fps"]
    return {**info, "shots": [{"kind": "video", "photo": None, "t_start": 0.0, "t_end": end,
                               "degenerate": False, "hold": False, "take": None}]}


def _usable(truth: dict) -> list[dict]:
    return [s for s in truth["shots"] if not s["degenerate"]]


def allocate(durations: Sequence[float], total: int) -> list[int]:
    """Moments per video: ``MIN_PER_VIDEO`` each, the rest in proportion to duration."""
    whole = sum(durations) or 1.0
    return [max(MIN_PER_VIDEO, round(total * d / whole)) for d in durations]


def _draw(video: Path, truth: dict, rng: random.Random) -> tuple[float, Image.Image] | None:
    """A uniformly drawn content frame (not flat) and its own timestamp."""
    shots = _usable(truth)
    lengths = [s["t_end"] - s["t_start"] for s in shots]
    fps = truth["fps"]
    for _ in range(_TRIES):
        shot = rng.choices(shots, weights=lengths)[0]
        first, last = math.ceil(shot["t_start"] * fps - 1e-6), math.floor(shot["t_end"] * fps
                                                                          - 1e-6)
        k = rng.randint(first, max(first, last))
        ts = k / fps
        frame = grab_frame(video, ts)
        if reels.frame_contrast(frame) >= MIN_CONTRAST:
            return ts, frame
    return None


def moment_set(videos: Sequence[Path], out: Path, moments: int, seed: int,
               edits: Mapping[str, Edit], split: str) -> list[dict]:
    """``moments`` drawn moments of ``videos``, each under every edit, saved in ``out``."""
    stamp = {"version": SETS_VERSION, "footage": footage_digest(videos), "moments": moments,
             "seed": seed, "edits": list(edits), "split": split}

    def build() -> list[dict]:
        truths = [truth_or_probe(v) for v in videos]
        counts = allocate([sum(s["t_end"] - s["t_start"] for s in _usable(t)) for t in truths],
                          moments)
        picks = []
        for video, truth, count in zip(videos, truths, counts, strict=True):
            rng = random.Random(f"moments:{split}:{seed}:{video.name}")
            for i in range(count):
                drawn = _draw(video, truth, rng)
                if drawn is not None:
                    picks.append((video, truth, i, *drawn))

        def post(pick: tuple) -> list[dict]:
            video, truth, i, ts, frame = pick
            segment = reels.segment_at(truth, ts)
            truth_set = reels.equivalent_moments(truth, ts) if "take" in segment else \
                [(ts, ts)]
            labels = []
            for edit, apply in edits.items():
                image = f"{split}_{video.stem}_{ts:08.3f}_{edit}.png"
                apply(frame, random.Random(f"{seed}:{video.name}:{ts}:{edit}")).save(
                    out / image)
                labels.append({"image": image, "video": video.name, "ts": ts,
                               "truth": [list(t) for t in truth_set], "edit": edit,
                               "moment": f"{video.stem}@{ts:.3f}", "footage": segment["kind"],
                               "hold": bool(segment.get("hold")),
                               "repeat": len(truth_set) > 1, "split": split})
            return labels

        with ThreadPoolExecutor(max_workers=2) as pool:
            return [label for labels in pool.map(post, picks) for label in labels]

    return _cached(out, stamp, build)


# ---- distractors -------------------------------------------------------------------------

_CARD_WORDS = ("ARCHIVE", "REEL", "TAPE", "ROLL", "NEWS", "PART", "CHAPTER", "SUMMER",
               "WINTER", "HOME", "MOVIES", "COLLECTION", "THE", "END", "INTERMISSION",
               "EPISODE", "FOOTAGE", "PROGRAMME", "SPECIAL", "REPORT")


def _card_text(rng: random.Random, forbidden: set[str]) -> str:
    while True:
        words = " ".join(rng.choice(_CARD_WORDS) for _ in range(rng.randint(1, 2)))
        text = f"{words} {rng.randint(3, 99):02d}" if rng.random() < 0.7 else words
        if text not in forbidden:
            return text


def near_uniform(rng: random.Random, size: tuple[int, int], blur_of: Image.Image
                 ) -> Image.Image:
    """A picture that shows almost nothing: flat with sensor noise, a gentle gradient, a
    vignette, or a photo blurred until only its colours are left."""
    w, h = size
    style = rng.choice(("black", "white", "grey", "gradient", "vignette", "blurred"))
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(1, 4), (h, w, 1))
    if style == "blurred":
        picture = blur_of.resize(size).filter(ImageFilter.GaussianBlur(max(size) / 6))
        base = np.asarray(picture, dtype=np.float32)
    else:
        level = {"black": rng.uniform(0, 25), "white": rng.uniform(225, 255),
                 "grey": rng.uniform(60, 200)}.get(style, rng.uniform(30, 200))
        base = np.full((h, w, 3), level, np.float32) * np.asarray(
            [rng.uniform(0.85, 1.0) for _ in range(3)], np.float32)
        if style == "gradient":
            base = base * np.linspace(rng.uniform(0.6, 0.9), 1.1, w)[None, :, None]
        if style == "vignette":
            yy, xx = np.mgrid[0:h, 0:w]
            r = np.hypot((xx - w / 2) / w, (yy - h / 2) / h)
            base = base * (1 - 0.8 * r)[:, :, None]
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def night_grade(picture: Image.Image, rng: random.Random) -> Image.Image:
    """A dark, low-contrast, bluish version of ``picture`` with sensor noise."""
    out = ImageEnhance.Brightness(picture).enhance(rng.uniform(0.2, 0.4))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.3, 0.6))
    pixels = np.asarray(out, dtype=np.float32) * np.asarray([0.85, 0.9, 1.15], np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 3, pixels.shape[:2] + (1,))
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def distractor_set(out: Path, seed: int, photos: Sequence[str | Path], heldout: Sequence[Path],
                   edits: Mapping[str, Edit], counts: Mapping[str, int],
                   forbidden_titles: set[str], split: str) -> list[dict]:
    """Distractors of every kind (module docstring) into ``out``; ``counts`` gives how many
    of ``heldout``, ``title_card``, ``near_uniform`` and ``night`` (``photo`` is each photo
    as it is and under every edit). ``photos`` are ``reels.PHOTOS`` names or files."""
    stamp = {"version": SETS_VERSION, "photos": [str(p) for p in photos],
             "heldout": footage_digest(heldout), "edits": list(edits), "counts": dict(counts),
             "seed": seed, "split": split, "forbidden": sorted(forbidden_titles)}
    names = list(edits)

    def picture_of(photo: str | Path) -> Image.Image:
        if isinstance(photo, Path):
            return Image.open(photo).convert("RGB")
        return reels.photo_picture(photo)

    def build() -> list[dict]:
        rng = random.Random(f"distractors:{split}:{seed}")
        jobs: list[tuple[str, str, Callable[[], Image.Image], str]] = []
        for photo in photos:
            stem = Path(str(photo)).stem
            for edit in ["none", *names]:
                jobs.append(("photo", f"{stem}_{edit}", lambda p=photo: picture_of(p), edit))
        truths = [(v, truth_or_probe(v)) for v in heldout]
        grabs = []
        for i in range(counts.get("heldout", 0) + counts.get("night", 0) if truths else 0):
            video, truth = truths[i % len(truths)]
            drawn = _draw(video, truth, random.Random(f"held:{split}:{seed}:{i}"))
            if drawn:
                grabs.append((video, *drawn))
        held, dark = grabs[:counts.get("heldout", 0)], grabs[counts.get("heldout", 0):]
        for i, (video, ts, frame) in enumerate(held):
            jobs.append(("heldout", f"{video.stem}_{ts:08.3f}", lambda f=frame: f,
                         names[i % len(names)]))
        size = reels.SIZE
        for i in range(counts.get("title_card", 0)):
            text = _card_text(rng, forbidden_titles)
            style = None if i % 2 == 0 else random.Random(f"card:{split}:{seed}:{i}")
            jobs.append(("title_card", f"card{i:03d}", lambda t=text, s=style:
                         reels.title_card(t, size, s), names[i % len(names)]))
        for i in range(counts.get("near_uniform", 0)):
            photo = photos[i % len(photos)]
            jobs.append(("near_uniform", f"flat{i:03d}", lambda i=i, p=photo: near_uniform(
                random.Random(f"flat:{split}:{seed}:{i}"), size, picture_of(p)),
                names[i % len(names)]))
        for i in range(counts.get("night", 0)):
            grade_rng = random.Random(f"night:{split}:{seed}:{i}")
            if i % 3 == 2 or not dark:  # a third are photos at night
                source = picture_of(photos[i % len(photos)])
            else:
                source = dark[i % len(dark)][2]
            jobs.append(("night", f"night{i:03d}", lambda s=source, r=grade_rng:
                         night_grade(s, r), names[(i + 3) % len(names)]))

        def make(job: tuple) -> dict:
            kind, stem, picture, edit = job
            image = f"{split}_{kind}_{stem}_{edit}.png"
            base = picture()
            edited = base if edit == "none" else edits[edit](
                base, random.Random(f"{split}:{seed}:{image}"))
            edited.save(out / image)
            return {"image": image, "video": None, "ts": None, "edit": edit, "kind": kind,
                    "split": split}

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(make, jobs))

    return _cached(out, stamp, build)
