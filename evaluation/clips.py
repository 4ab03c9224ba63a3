"""Posted clips (issue 19): short re-uploads of archive footage, with where they came from.

Each clip is 3-8 s of an archive video re-encoded with FFmpeg the way clips are reposted:
low bitrate and resolution, a caption, mirrored, cropped 10-15 %, a logo, letterboxed or
pillarboxed, the 9:16 vertical format over a blurred copy of the frame, a GIF at 10 fps and
320 px with a small palette, another frame rate, a start trimmed just after a cut (and
timestamps that do not start at 0). Compilations join two sources; distractor clips come
from held-out footage and must match nothing.

Truth, per source segment of a clip: the video, the clip times it covers
(``query_start``..``query_end``) and the acceptable **offsets**, archive time = offset +
clip time (the contract of issue 19's ``ref_ts_s``). An offset is exact, except that a clip
lying wholly inside a hold may start anywhere in it and one inside a repeated shot at the
same point of either copy (intervals, as ``reels.equivalent_moments``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from evaluation import reels
from evaluation.footage import load_font, pick_font, run_ffmpeg
from evaluation.sets import footage_digest, truth_or_probe

CLIPS_VERSION = 1
MIN_SECONDS, MAX_SECONDS = 3.0, 8.0

# An edit: (rng, source size, work dir) -> (filter graph from [0:v] to [v], overlay PNGs
# (inputs 1..n), extra output args, file suffix).
Recipe = tuple[str, list[Path], list[str], str]
ClipEdit = Callable[[random.Random, tuple[int, int], Path], Recipe]

_WORDS = ("wait", "for", "it", "this", "is", "unreal", "old", "footage", "found", "watch",
          "till", "the", "end", "throwback", "legendary", "nobody", "remembers")


def _band(rng: random.Random, width: int, height: int, work: Path) -> Path:
    """A caption band (white on a colour, or outlined text on transparency) as a PNG."""
    band = Image.new("RGBA", (width, height), (0, 0, 0, 0) if rng.random() < 0.5 else
                     (rng.randrange(256), rng.randrange(256), rng.randrange(256), 255))
    draw = ImageDraw.Draw(band)
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 6))).upper()
    font = load_font(max(8, round(height * 0.5)), pick_font(rng))
    draw.text((width / 2, height / 2), text, fill=(255, 255, 255, 255), font=font, anchor="mm",
              stroke_width=max(1, height // 20), stroke_fill=(0, 0, 0, 255))
    path = work / f"band_{rng.randrange(10**9)}.png"
    band.save(path)
    return path


def _logo(rng: random.Random, side: int, work: Path) -> Path:
    logo = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256), 200)
    draw.ellipse((0, 0, side - 1, side - 1), fill=colour)
    draw.text((side / 2, side / 2), rng.choice(("TV", "24", "HD", "N")), anchor="mm",
              fill=(255, 255, 255, 230), font=load_font(max(6, side // 2)))
    path = work / f"logo_{rng.randrange(10**9)}.png"
    logo.save(path)
    return path


def reencode_low(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    width = rng.choice((240, 320, 360))
    kbps = rng.randint(80, 200)
    return (f"[0:v]scale={width}:-2[v]", [], ["-b:v", f"{kbps}k", "-maxrate", f"{kbps * 2}k",
                                               "-bufsize", f"{kbps * 2}k"], ".mp4")


def caption(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    height = max(8, round(size[1] * rng.uniform(0.12, 0.2)))
    y = "0" if rng.random() < 0.5 else "H-h"
    return (f"[0:v][1:v]overlay=0:{y}[v]", [_band(rng, size[0], height, work)], [], ".mp4")


def mirror(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    return "[0:v]hflip[v]", [], [], ".mp4"


def crop(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    keep_w, keep_h = 1 - rng.uniform(0.10, 0.15), 1 - rng.uniform(0.10, 0.15)
    x, y = rng.random() * (1 - keep_w), rng.random() * (1 - keep_h)
    return (f"[0:v]crop=trunc(iw*{keep_w:.3f}/2)*2:trunc(ih*{keep_h:.3f}/2)*2:"
            f"iw*{x:.3f}:ih*{y:.3f}[v]", [], [], ".mp4")


def logo(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    side = max(8, round(size[1] * rng.uniform(0.1, 0.16)))
    corner = rng.choice(("10:10", "W-w-10:10", "10:H-h-10", "W-w-10:H-h-10"))
    return f"[0:v][1:v]overlay={corner}[v]", [_logo(rng, side, work)], [], ".mp4"


def letterbox(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    """Bars above and below: the frame centred on a square canvas."""
    return ("[0:v]pad=iw:trunc(iw/2)*2:0:(oh-ih)/2:black[v]", [], [], ".mp4")


def pillarbox(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    """Bars left and right: the frame centred on a canvas 30-50 % wider."""
    wider = rng.uniform(1.3, 1.5)
    return f"[0:v]pad=trunc(iw*{wider:.2f}/2)*2:ih:(ow-iw)/2:0:black[v]", [], [], ".mp4"


def vertical_blur(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    """9:16 vertical: the landscape frame across the middle over a blurred, zoomed copy."""
    w = rng.choice((360, 480))
    h = w * 16 // 9
    return (f"[0:v]split[a][b];[a]scale={w}:{h}:force_original_aspect_ratio=increase,"
            f"crop={w}:{h},boxblur=20:2[bg];[b]scale={w}:-2[fg];"
            f"[bg][fg]overlay=0:(H-h)/2[v]", [], [], ".mp4")


def gif(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    colours = rng.choice((32, 64, 128))
    return (f"[0:v]fps=10,scale=320:-2:flags=lanczos,split[a][b];"
            f"[a]palettegen=max_colors={colours}[p];[b][p]paletteuse=dither=bayer[v]",
            [], [], ".gif")


def frame_rate(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    return f"[0:v]fps={rng.choice((12, 15, 30, 50))}[v]", [], [], ".mp4"


def trim_start(rng: random.Random, size: tuple[int, int], work: Path) -> Recipe:
    """Plain re-encode whose timestamps start late (the start was cut in an editor)."""
    return ("[0:v]null[v]", [], ["-output_ts_offset", f"{rng.uniform(0.5, 3.0):.2f}"], ".mp4")


CLIP_EDITS: dict[str, ClipEdit] = {
    "reencode_low": reencode_low, "caption": caption, "mirror": mirror, "crop": crop,
    "logo": logo, "letterbox": letterbox, "pillarbox": pillarbox,
    "vertical_blur": vertical_blur, "gif": gif, "frame_rate": frame_rate,
    "trim_start": trim_start,
}


def offsets(truth: dict, t0: float, seconds: float) -> list[list[float]]:
    """Acceptable offsets of a clip of ``seconds`` starting at archive time ``t0``: the
    equivalent moments of its start when it stays inside one shot, else ``t0`` itself (a cut
    inside the clip pins it)."""
    seg = reels.segment_at(truth, t0)
    if t0 + seconds > seg["t_end"] + 1e-6:
        return [[t0, t0]]
    moments = reels.equivalent_moments(truth, t0)
    if seg.get("hold"):  # it may start anywhere it still ends inside the hold
        frame = 1 / truth["fps"]
        return [[a, round(max(a, b + frame - seconds), 6)] for a, b in moments]
    return [[a, b] for a, b in moments]


def _pick(truth: dict, rng: random.Random, seconds: float, near_cut: bool
          ) -> float | None:
    """A start time (a frame's own time) with ``seconds`` of content after it."""
    fps = truth["fps"]
    shots = [s for s in truth["shots"] if not s["degenerate"]]
    end = truth["shots"][-1]["t_end"]
    for _ in range(20):
        shot = rng.choice(shots)
        t = shot["t_start"] + (rng.uniform(0.3, 1.2) if near_cut else
                               rng.uniform(0, max(0.0, shot["t_end"] - shot["t_start"] - 0.5)))
        k = round(t * fps)
        if k / fps + seconds <= end - 1 / fps:
            return k / fps
    return None


def _cut(video: Path, t0: float, seconds: float, edit: str, rng: random.Random, out: Path,
         work: Path, size: tuple[int, int]) -> Path:
    graph, overlays, extra, suffix = CLIP_EDITS[edit](rng, size, work)
    target = out.with_suffix(suffix)
    codec = [] if suffix == ".gif" else ["-c:v", "libx264", "-preset", "veryfast", "-crf", "26",
                                         "-pix_fmt", "yuv420p"]
    run_ffmpeg(["-ss", f"{t0:.6f}", "-t", f"{seconds:.3f}", "-i", str(video),
                *[a for p in overlays for a in ("-i", str(p))], "-filter_complex", graph,
                "-map", "[v]", "-an", *codec, *extra, str(target)])
    return target


def _compile(parts: Sequence[tuple[Path, float, float]], out: Path) -> Path:
    """Sources joined one after the other, each fitted into 640x360 (a compilation)."""
    inputs, chains = [], []
    for i, (video, t0, seconds) in enumerate(parts):
        inputs += ["-ss", f"{t0:.6f}", "-t", f"{seconds:.3f}", "-i", str(video)]
        chains.append(f"[{i}:v]scale=640:360:force_original_aspect_ratio=decrease,"
                      f"pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p[c{i}]")
    graph = ";".join(chains) + ";" + "".join(f"[c{i}]" for i in range(len(parts)))
    graph += f"concat=n={len(parts)}:v=1:a=0[v]"
    target = out.with_suffix(".mp4")
    run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264",
                "-preset", "veryfast", "-crf", "26", str(target)])
    return target


def clip_set(videos: Sequence[Path], heldout: Sequence[Path], out: Path, per_edit: int,
             seed: int, compilations: int, distractors: int) -> list[dict]:
    """Clips of ``videos`` under every edit, compilations and distractor clips, with truth
    (module docstring), written to ``out`` with ``labels.json``; cached by a stamp."""
    stamp = {"version": CLIPS_VERSION, "footage": footage_digest(videos),
             "heldout": footage_digest(heldout),
             "per_edit": per_edit, "seed": seed, "compilations": compilations,
             "distractors": distractors, "edits": list(CLIP_EDITS)}
    labels_path = out / "labels.json"
    if labels_path.exists():
        cached = json.loads(labels_path.read_text())
        if cached.get("stamp") == stamp:
            return cached["labels"]
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    work.mkdir(exist_ok=True)
    truths = {v: truth_or_probe(v) for v in videos}
    long_enough = [v for v in videos if truths[v]["shots"][-1]["t_end"] >= MIN_SECONDS + 1]
    labels: list[dict] = []
    for edit in CLIP_EDITS:
        for i in range(per_edit):
            rng = random.Random(f"clip:{seed}:{edit}:{i}")
            video = long_enough[i % len(long_enough)]
            truth = truths[video]
            seconds = round(rng.uniform(MIN_SECONDS, min(MAX_SECONDS, truth["shots"][-1]["t_end"]
                                                         - 1)), 2)
            t0 = _pick(truth, rng, seconds, near_cut=edit == "trim_start")
            if t0 is None:
                continue
            name = f"clip_{edit}_{i:03d}_{video.stem}"
            clip = _cut(video, t0, seconds, edit, rng, out / name, work, tuple(truth["size"]))
            labels.append({"clip": clip.name, "edit": edit, "duration": seconds, "segments": [
                {"video": video.name, "offsets": offsets(truth, t0, seconds),
                 "query_start": 0.0, "query_end": seconds}]})
    for i in range(compilations):
        rng = random.Random(f"compilation:{seed}:{i}")
        pair = rng.sample(long_enough, 2)
        parts, segments, at = [], [], 0.0
        for video in pair:
            seconds = round(rng.uniform(2.5, 4.0), 2)
            t0 = _pick(truths[video], rng, seconds, near_cut=False)
            if t0 is None:
                break
            parts.append((video, t0, seconds))
            segments.append({"video": video.name, "query_start": at, "query_end": at + seconds,
                             "offsets": [[round(a - at, 6), round(b - at, 6)] for a, b in
                                         offsets(truths[video], t0, seconds)]})
            at += seconds
        if len(parts) == 2:
            clip = _compile(parts, out / f"compilation_{i:03d}")
            labels.append({"clip": clip.name, "edit": "compilation", "duration": at,
                           "segments": segments})
    held = {v: truth_or_probe(v) for v in heldout}
    for i in range(distractors):
        rng = random.Random(f"clip-distractor:{seed}:{i}")
        video = list(held)[i % len(held)]
        seconds = round(rng.uniform(MIN_SECONDS, MAX_SECONDS), 2)
        t0 = _pick(held[video], rng, seconds, near_cut=False)
        if t0 is None:
            continue
        edit = list(CLIP_EDITS)[i % len(CLIP_EDITS)]
        clip = _cut(video, t0, seconds, edit, rng, out / f"distractor_{i:03d}_{edit}", work,
                    tuple(held[video]["size"]))
        labels.append({"clip": clip.name, "edit": edit, "duration": seconds, "segments": []})
    labels_path.write_text(json.dumps({"stamp": stamp, "labels": labels}, indent=1))
    return labels
