"""Deterministic "posted screengrabs": archive frames edited the way people repost them.

This is the exam, so it is written apart from the matcher: it imports nothing from
``transforms`` and shares no constants with it. If matching needs tuning to pass, the
tuning has to generalise, not mirror these numbers.

Every edit is ``edit(image, rng) -> image``; all randomness comes from the given
``random.Random``, so the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from evaluation.footage import load_font, pick_font

Edit = Callable[[Image.Image, random.Random], Image.Image]

# Filler vocabulary for captions and post text.
# fmt: off
_WORDS = (
    "breaking", "news", "tonight", "watch", "this", "incredible", "footage", "from", "the",
    "archive", "they", "never", "showed", "you", "before", "share", "if", "remember", "wow",
    "unbelievable", "moment", "history", "rare", "clip", "throwback", "classic", "look", "at",
    "it", "again", "scene", "everyone", "talking", "about", "why", "did", "nobody", "notice",
)
# fmt: on


def grab_frame(video: Path, ts: float) -> Image.Image:
    """The first frame of ``video`` whose timestamp is >= ``ts`` seconds, full size, RGB.

    FFmpeg's input ``-ss`` seeks to the keyframe before and decodes forward (accurate
    seek). ``ts`` is floored to the microsecond, so a frame's own timestamp computed in
    floating point (``k / fps``) lands on that frame rather than the next.
    """
    seek = f"{math.floor(ts * 1e6) / 1e6:.6f}"
    proc = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-ss",
            seek,
            "-i",
            str(video),
            "-frames:v",
            "1",
            "-an",
            "-sn",
            "-pix_fmt",
            "rgb24",
            "-c:v",
            "png",
            "-f",
            "image2pipe",
            "-",
        ],
        capture_output=True,
    )
    if proc.returncode or not proc.stdout:
        raise ValueError(f"no frame at {ts}s in {video}: {proc.stderr.decode().strip()}")
    image = Image.open(io.BytesIO(proc.stdout))
    image.load()
    return image.convert("RGB")


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _ink_on(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads on ``colour``."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text`` shortened word by word until it fits ``width`` pixels."""
    words = text.split()
    while len(words) > 1 and draw.textlength(" ".join(words), font=font) > width:
        words.pop()
    return " ".join(words)


def jpeg_resize(image: Image.Image, rng: random.Random) -> Image.Image:
    """Downscaled to 50-70 % and re-encoded as JPEG at quality 30-50: a typical repost."""
    scale = rng.uniform(0.5, 0.7)
    small = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
    )
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=rng.randint(30, 50))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def colour(image: Image.Image, rng: random.Random) -> Image.Image:
    """A filter: saturation, brightness, contrast, a warm or cool tint, a slight blur."""
    out = ImageEnhance.Color(image).enhance(rng.uniform(0.5, 1.5))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.75, 1.3))
    gains = [rng.uniform(0.9, 1.1) for _ in range(3)]
    bands = zip(out.split(), gains, strict=True)
    out = Image.merge(
        "RGB", [band.point(lambda v, g=g: min(255, round(v * g))) for band, g in bands]
    )
    return out.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2)))


def caption(image: Image.Image, rng: random.Random) -> Image.Image:
    """A caption band of 10-20 % of the height, top or bottom, added or laid over the picture."""
    band = round(image.height * rng.uniform(0.10, 0.20))
    bar = _random_colour(rng)
    top = rng.random() < 0.5
    if rng.random() < 0.5:  # meme style: the band extends the canvas
        out = Image.new("RGB", (image.width, image.height + band), bar)
        out.paste(image, (0, band if top else 0))
        y0 = 0 if top else image.height
    else:  # news style: the band covers part of the picture
        out = image.copy()
        y0 = 0 if top else image.height - band
        out.paste(bar, (0, y0, image.width, y0 + band))
    draw = ImageDraw.Draw(out)
    font = load_font(max(8, round(band * rng.uniform(0.4, 0.6))), pick_font(rng))
    text = _fit_text(draw, _words(rng, rng.randint(3, 9)).upper(), font, image.width * 0.92)
    draw.text((image.width / 2, y0 + band / 2), text, fill=_ink_on(bar), font=font, anchor="mm")
    return out


def crop(image: Image.Image, rng: random.Random) -> Image.Image:
    """An asymmetric crop: 5-10 % off each edge, independently."""
    w, h = image.size
    left, right = (w * rng.uniform(0.05, 0.10) for _ in range(2))
    top, bottom = (h * rng.uniform(0.05, 0.10) for _ in range(2))
    return image.crop((round(left), round(top), round(w - right), round(h - bottom)))


def crop_asymmetric(image: Image.Image, rng: random.Random) -> Image.Image:
    """About 10 % of each dimension cut off, split unevenly between the two edges (off-centre).

    Per dimension, 8-12 % of it is removed, and a random share of that (0-100 %) comes off
    the first edge: the kept box is shifted, which is what defeats centred reference crops.
    """
    w, h = image.size
    box = []
    for size in (w, h):
        cut = size * rng.uniform(0.08, 0.12)
        first = cut * rng.random()
        box.append((first, size - (cut - first)))
    (left, right), (top, bottom) = box
    return image.crop((round(left), round(top), round(right), round(bottom)))


def centre_crop(image: Image.Image, rng: random.Random) -> Image.Image:
    """The centre 75 % of each side (``rng`` unused: the edit is fixed)."""
    w, h = image.size
    return image.crop((round(w * 0.125), round(h * 0.125), round(w * 0.875), round(h * 0.875)))


def _blurred_cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` scaled to cover ``size`` and heavily blurred: the "blurred borders" look."""
    cover = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
    return cover.filter(ImageFilter.GaussianBlur(max(size) / 30))


def _backdrop(image: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    if rng.random() < 0.5:
        return Image.new("RGB", size, (0, 0, 0))
    return _blurred_cover(image, size)


def pad_square(image: Image.Image, rng: random.Random) -> Image.Image:
    """Centred on a square canvas with black or blurred borders."""
    side = max(image.size)
    out = _backdrop(image, (side, side), rng)
    out.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return out


def _status_bar(
    draw: ImageDraw.ImageDraw, width: int, height: int, ink, rng: random.Random, face: Path | None
) -> None:
    """A phone status bar: clock on the left, signal and battery on the right."""
    font = load_font(max(8, round(height * 0.55)), face)
    clock = f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}"
    draw.text((width * 0.06, height / 2), clock, fill=ink, font=font, anchor="lm")
    battery = (width * 0.86, height * 0.3, width * 0.94, height * 0.7)
    draw.rectangle(battery, outline=ink, width=max(1, height // 20))
    level = battery[0] + (battery[2] - battery[0]) * rng.uniform(0.2, 1.0)
    draw.rectangle((battery[0], battery[1], level, battery[3]), fill=ink)
    for i in range(4):
        x = width * 0.76 + i * width * 0.018
        draw.rectangle((x, height * (0.65 - 0.1 * i), x + width * 0.01, height * 0.7), fill=ink)


def letterbox_phone(image: Image.Image, rng: random.Random) -> Image.Image:
    """A portrait 9:16 phone screen playing the landscape video, with a status bar."""
    width = image.width
    height = round(width * 16 / 9)
    out = _backdrop(image, (width, height), rng)
    out.paste(image, (0, round((height - image.height) * rng.uniform(0.4, 0.5))))
    _status_bar(
        ImageDraw.Draw(out), width, round(height * 0.035), (255, 255, 255), rng, pick_font(rng)
    )
    return out


def flip(image: Image.Image, rng: random.Random) -> Image.Image:
    """Mirrored left to right (``rng`` unused: the edit is fixed)."""
    return ImageOps.mirror(image)


def rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    """Rotated 2-4 degrees either way, cropped to the largest same-aspect box inside."""
    angle = rng.uniform(2.0, 4.0) * rng.choice((-1, 1))
    w, h = image.size
    a = math.radians(abs(angle))
    scale = min(w / (w * math.cos(a) + h * math.sin(a)), h / (w * math.sin(a) + h * math.cos(a)))
    turned = image.rotate(angle, resample=Image.Resampling.BICUBIC)
    keep_w, keep_h = w * scale, h * scale
    left, top = (w - keep_w) / 2, (h - keep_h) / 2
    return turned.crop((math.ceil(left), math.ceil(top), int(left + keep_w), int(top + keep_h)))


_THEMES = {
    "light": {"bg": (255, 255, 255), "ink": (15, 20, 25), "muted": (110, 118, 125)},
    "dark": {"bg": (0, 0, 0), "ink": (231, 233, 234), "muted": (113, 118, 123)},
    "dim": {"bg": (21, 32, 43), "ink": (247, 249, 249), "muted": (139, 152, 165)},
}


def screenshot(image: Image.Image, rng: random.Random) -> Image.Image:
    """A phone screenshot of a social-media post showing the frame.

    Varied on purpose: theme (light/dark/dim), screen size, font, accent colour, whether
    the post text sits above or below the picture, margins with rounded corners or full
    bleed; then the app's action bar, the next post peeking in and a bottom navigation bar.
    """
    theme = _THEMES[rng.choice(sorted(_THEMES))]
    bg, ink, muted = theme["bg"], theme["ink"], theme["muted"]
    accent = _random_colour(rng)
    face = pick_font(rng)
    width = rng.choice((720, 828, 1080, 1170))
    height = round(width * rng.choice((16 / 9, 19.5 / 9, 20 / 9)))
    unit = width / 100  # layout in hundredths of the screen width
    out = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(out)
    body_font = load_font(round(unit * 3.8), face)
    small_font = load_font(round(unit * 3.2), face)

    def avatar_and_name(top: float) -> float:
        radius = unit * 5
        draw.ellipse(
            (unit * 4, top, unit * 4 + 2 * radius, top + 2 * radius), fill=_random_colour(rng)
        )
        name = _words(rng, 2).title()
        draw.text((unit * 17, top + radius * 0.6), name, fill=ink, font=body_font, anchor="lm")
        handle = f"@{_words(rng, 1)}{rng.randint(1, 999)} · {rng.randint(1, 23)}h"
        draw.text((unit * 17, top + radius * 1.5), handle, fill=muted, font=small_font, anchor="lm")
        return top + 2 * radius + unit * 2

    def text_lines(top: float, count: int) -> float:
        for _ in range(count):
            line = _fit_text(draw, _words(rng, 12), body_font, width - unit * 8)
            draw.text((unit * 4, top), line, fill=ink, font=body_font)
            top += unit * 5.5
        return top + unit

    bar = round(unit * 6)
    _status_bar(draw, width, bar, ink, rng, face)
    app_name = _words(rng, 1).title()
    header_font = load_font(round(unit * rng.uniform(4.5, 6)), face)
    draw.text((unit * 4, bar + unit * 5), app_name, fill=accent, font=header_font, anchor="lm")
    y = bar + unit * 10
    draw.line((0, y, width, y), fill=muted, width=1)
    y = avatar_and_name(y + unit * 3)
    text_first = rng.random() < 0.6
    if text_first:
        y = text_lines(y, rng.randint(1, 3))

    margin = rng.choice((0.0, unit * 4))
    shown_w = round(width - 2 * margin)
    shown_h = min(round(image.height * shown_w / image.width), round(height - y - unit * 30))
    shown = ImageOps.fit(image, (shown_w, shown_h), Image.Resampling.LANCZOS)
    mask = Image.new("L", shown.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, *shown.size), radius=round(margin * 0.8), fill=255
    )
    out.paste(shown, (round(margin), round(y)), mask)
    y += shown_h + unit * 3

    icon = unit * 2.2  # action bar: like, comment, repost, share
    for i in range(4):
        cx = unit * (8 + 24 * i)
        draw.ellipse(
            (cx - icon, y, cx + icon, y + 2 * icon), outline=muted, width=max(1, round(unit / 3))
        )
        draw.text(
            (cx + icon * 1.6, y + icon),
            str(rng.randint(1, 999)),
            fill=muted,
            font=small_font,
            anchor="lm",
        )
    y += 2 * icon + unit * 3
    if not text_first:
        y = text_lines(y, rng.randint(1, 3))

    nav_top = height - unit * 14
    while y + unit * 20 < nav_top:  # the feed goes on below
        draw.line((0, y, width, y), fill=muted, width=1)
        y = text_lines(avatar_and_name(y + unit * 3), rng.randint(1, 3))
        draw.rectangle((unit * 4, y, width - unit * 4, y + unit * 40), fill=_random_colour(rng))
        y += unit * 43
    draw.rectangle((0, nav_top, width, height), fill=bg)  # hides the feed running under it
    draw.line((0, nav_top, width, nav_top), fill=muted, width=1)
    for i in range(5):
        cx = width * (i + 0.5) / 5
        draw.rounded_rectangle(
            (cx - icon, nav_top + unit * 3, cx + icon, nav_top + unit * 3 + 2 * icon),
            radius=round(icon / 2),
            outline=accent if i == 0 else ink,
            width=max(1, round(unit / 3)),
        )
    return out


def _chain(*steps: Edit) -> Edit:
    """Edits applied in order, sharing one random stream."""

    def edit(image: Image.Image, rng: random.Random) -> Image.Image:
        for step in steps:
            image = step(image, rng)
        return image

    return edit


EDITS: dict[str, Edit] = {
    "jpeg_resize": jpeg_resize,
    "colour": colour,
    "caption": caption,
    "crop": crop,
    "centre_crop": centre_crop,
    "pad_square": pad_square,
    "letterbox_phone": letterbox_phone,
    "flip": flip,
    "rotate": rotate,
    "screenshot": screenshot,
}
for _combo in (
    ("caption", "jpeg_resize"),
    ("flip", "crop"),
    ("colour", "rotate"),
    ("crop", "caption", "jpeg_resize"),
    ("screenshot", "jpeg_resize"),
):
    EDITS["+".join(_combo)] = _chain(*(EDITS[name] for name in _combo))


# The exam's edits: the nine of issue 16's held-out set (named as there), then two more of
# the catalogue above that posts often show. ``framematch eval`` applies every one of them to
# every moment it draws.
EXAM_EDITS: dict[str, Edit] = {
    "crop10_asym": crop_asymmetric,
    "crop25_centre": centre_crop,
    "rotate_crop": rotate,
    "screenshot": screenshot,
    "caption": caption,
    "pad_square": pad_square,
    "mirror": flip,
    "colour_blur": colour,
    "jpeg_resize": jpeg_resize,
    "letterbox_phone": letterbox_phone,
    "screenshot+jpeg_resize": EDITS["screenshot+jpeg_resize"],
}
ISSUE_EDITS = tuple(list(EXAM_EDITS)[:9])


def _shot_at(shots: Sequence[dict], ts: float) -> dict:
    """The truth segment on screen at ``ts``."""
    return next((s for s in shots if s["t_start"] <= ts < s["t_end"]), shots[-1])


def make_queries(
    videos: Iterable[Path],
    truth: Mapping[Path, dict],
    out_dir: Path,
    per_video: int,
    seed: int,
    edits: Sequence[str] | None = None,
) -> list[dict]:
    """Edited screengrabs of ``videos`` with their labels, also written to ``labels.json``.

    ``per_video`` frames per video are drawn uniformly from the frames whose truth segment
    is not degenerate; in addition, the middle frame of each degenerate segment (title card,
    fade, black) is taken and labelled ``degenerate: true``, so matchers can be tested on
    the cases they should refuse. Edits are dealt round-robin from a shuffled list so each
    is used about equally. Image paths in the labels are relative to ``out_dir``.
    """
    names = list(edits or EDITS)
    rng = random.Random(f"queries:{seed}")
    order = rng.sample(names, len(names))
    out_dir.mkdir(parents=True, exist_ok=True)
    labels: list[dict] = []
    for video in videos:
        info = truth[video]
        fps, shots = info["fps"], info["shots"]
        frames = [(k, _shot_at(shots, k / fps)) for k in range(info["frames"])]
        usable = [k for k, shot in frames if not shot["degenerate"]]
        picks = sorted(rng.sample(usable, min(per_video, len(usable))))
        picks += [round((s["t_start"] + s["t_end"]) / 2 * fps) for s in shots if s["degenerate"]]
        for k in picks:
            edit = order[len(labels) % len(order)]
            shot = frames[k][1]
            edit_rng = random.Random(f"{seed}:{video.name}:{k}:{edit}")
            edited = EDITS[edit](grab_frame(video, k / fps), edit_rng)
            image = f"{video.stem}_{k:06d}_{edit}.png"
            edited.save(out_dir / image)
            labels.append(
                {
                    "image": image,
                    "video": video.name,
                    "ts": k / fps,  # the frame's own timestamp: grab_frame(video, ts) gives it back
                    "frame": k,
                    "edit": edit,
                    "kind": shot["kind"],
                    "photo": shot["photo"],
                    "degenerate": shot["degenerate"],
                }
            )
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    return labels
