"""``framematch eval``: match quality you can measure, against what users would otherwise use.

    framematch eval --work DIR [--footage DIR] [--distractors DIR] [--heldout DIR]
                    [--queries_per_video 12] [--seed 0] [--calibrate] [--target_fpr 0.01]

Builds an evaluation set from a folder of videos (default: the bundled test archive) and
photos that are in none of them (default: scikit-image photos kept out of every archive),
plus frames of held-out videos as hard negatives; runs the real index and match pipelines;
and prints (and writes as ``eval.md`` and ``eval.parquet``) per edit type recall@1,
recall@5, median |Δt| and span width, the distractor false-positive rate and overall
precision with 95% intervals, for framematch's hash path, framematch with ``--verify``, and
two baselines in the same run: pHash at 1 frame/s and PDQ at 1 frame/s (Meta's defaults).

With ``--calibrate``, the key threshold is swept on a calibration split (other seed, other
distractors) and the highest-recall threshold whose false-positive rate stays within
``--target_fpr`` is used on the disjoint report split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from evaluation import baselines, footage
from evaluation.scoring import TOLERANCE_S, is_hit, score, wilson
from evaluation.sets import make_set, photo_distractors, photos_in, videos_in
from pipelines import index, match
from pipelines.options import CommandParser, CommonOptions, refuse_unknown_flags
from transforms.index.store import load_manifest
from transforms.media.images import load_image
from transforms.results.views import connect

SWEEP = range(8, 65, 4)  # thresholds (bits of the 256-bit key) tried by --calibrate
EMBEDDED = ["--runner=FnApiRunner"]


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = CommandParser(prog="framematch eval", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="Where sets, indexes and results go.")
    parser.add_argument("--verdicts", metavar="OUT",
                        help="Calibrate on analysts' verdicts in a results directory instead: "
                             "confirmed pairs are true matches, rejected ones false.")
    parser.add_argument("--footage", help="Folder of archive videos (default: test archive).")
    parser.add_argument("--distractors", help="Folder of photos in no video.")
    parser.add_argument("--heldout", help="Folder of videos not indexed (hard negatives).")
    parser.add_argument("--queries_per_video", type=int, default=12)
    parser.add_argument("--heldout_frames", type=int, default=250,
                        help="Distractor frames drawn per held-out video.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=int, default=match.DEFAULT_THRESHOLD)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--target_fpr", type=float, default=0.01)
    parser.add_argument("--no_baselines", action="store_true")
    parser.add_argument("--pad", action="store_true",
                        help="Also measure the false-positive rate with the index padded "
                             "with unrelated footage (--pad_footage, default: the bundled "
                             "benchmark archive, ~12 min of 720p).")
    parser.add_argument("--pad_footage", help="Folder of padding videos for --pad.")
    args, beam_args = parser.parse_known_args(argv)  # the rest goes to the jobs it runs
    refuse_unknown_flags("eval", beam_args, [CommonOptions, index.IndexOptions, match.MatchOptions],
                         list(parser._option_string_actions))
    return args, beam_args


def results(out: Path) -> dict[str, list[dict]]:
    """Match rows of a run by image file name, best first."""
    rows = ds.dataset(out / "matches", format="parquet", partitioning="hive").to_table()
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(rows.to_pylist(), key=lambda r: r["rank"]):
        grouped[Path(row["query_uri"]).name].append(row)
    return grouped


def run_match(index_dir: Path, images: list[Path], out: Path, threshold: int,
              extra: list[str]) -> tuple[dict[str, list[dict]], float]:
    """One real match run; returns its rows by image and its wall time."""
    listing = out.with_suffix(".txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{p}\n" for p in images))
    began = time.monotonic()
    match.run(["--index", str(index_dir), "--images", str(listing), "--out", str(out),
               "--threshold", str(threshold), "--run_id", "eval", *EMBEDDED, *extra])
    return results(out), time.monotonic() - began


def rethreshold(rows: dict[str, list[dict]], radius: int) -> dict[str, list[dict]]:
    """Spans of a generous run that a tighter radius would keep (best-frame distance)."""
    return {k: [r for r in v if r["distance"] <= radius] for k, v in rows.items()}


def rates(labels: list[dict], rows: dict[str, list[dict]]) -> dict[str, float | int]:
    """Recall@1 on source queries, false positives on distractors, precision of answers."""
    sources = [lb for lb in labels if lb["video"]]
    distractors = [lb for lb in labels if not lb["video"]]
    hits = sum(bool(rows.get(lb["image"])) and is_hit(rows[lb["image"]][0], lb["video"],
                                                      lb["ts"]) for lb in sources)
    answered = sum(bool(rows.get(lb["image"])) for lb in labels)
    false = sum(bool(rows.get(lb["image"])) for lb in distractors)
    return {"n_source": len(sources), "hits": hits, "n_distractors": len(distractors),
            "false_positives": false, "answered": answered,
            "recall": hits / max(len(sources), 1), "fpr": false / max(len(distractors), 1),
            "precision": hits / answered if answered else 1.0}


def calibrate(index_dir: Path, labels: list[dict], paths: list[Path], prune_d: int,
              target_fpr: float, work: Path) -> int:
    """Sweep the key threshold on the calibration split; the best one within the FPR."""
    rows, _ = run_match(index_dir, paths, work / "runs" / "calibrate", max(SWEEP), [])
    print(f"\ncalibration split: {sum(1 for lb in labels if lb['video'])} source queries, "
          f"{sum(1 for lb in labels if not lb['video'])} distractors")
    print("threshold  recall@1  FPR     precision")
    chosen = min(SWEEP)
    for threshold in SWEEP:
        r = rates(labels, rethreshold(rows, threshold + prune_d))
        print(f"{threshold:9d}  {r['recall']:.3f}     {r['fpr']:.3f}   {r['precision']:.3f}")
        if r["fpr"] <= target_fpr:
            chosen = threshold
    print(f"chosen threshold: {chosen} (highest with FPR <= {target_fpr})")
    return chosen


def table(methods: dict[str, tuple[dict[str, list[dict]], float]], labels: list[dict]
          ) -> tuple[str, list[dict]]:
    """The markdown report and per-query rows for Parquet."""
    sources = [lb for lb in labels if lb["video"]]
    names = list(methods)
    scores = {m: score(sources, rows) for m, (rows, _) in methods.items()}
    edits = sorted({lb["edit"] for lb in sources}) + ["all"]
    lines = ["| edit | n | " + " | ".join(f"{m} r@1" for m in names)
             + f" | {names[-1]} r@5 | {names[-1]} median |Δt| s | {names[-1]} span s |",
             "|---|---|" + "---|" * (len(names) + 3)]
    for edit in edits:
        s = {m: scores[m].get(edit) for m in names}
        last = s[names[-1]]
        lines.append(
            f"| {edit} | {last.n if last else 0} | "
            + " | ".join(f"{s[m].recall1:.2f}" if s[m] else "-" for m in names)
            + f" | {last.recall5:.2f} | "
            f"{last.median_dt if last.median_dt is not None else float('nan'):.2f} | "
            f"{last.median_span if last.median_span is not None else float('nan'):.2f} |")
    lines += ["", "| method | distractor FPR (n, 95% CI) | precision (answered) | images/s |",
              "|---|---|---|---|"]
    per_query = []
    for m, (rows, seconds) in methods.items():
        r = rates(labels, rows)
        low, high = wilson(r["false_positives"], r["n_distractors"])
        plow, phigh = wilson(r["hits"], r["answered"])
        lines.append(f"| {m} | {r['fpr']:.3f} ({r['false_positives']}/{r['n_distractors']}, "
                     f"{low:.3f}–{high:.3f}) | {r['precision']:.3f} ({r['answered']}, "
                     f"{plow:.3f}–{phigh:.3f}) | {len(labels) / seconds:.1f} |")
        for lb in labels:
            ranked = rows.get(lb["image"], [])
            per_query.append({
                "method": m, "image": lb["image"], "edit": lb["edit"], "kind": lb["kind"],
                "video": lb["video"], "ts": lb["ts"], "answered": bool(ranked),
                "hit1": bool(lb["video"]) and bool(ranked) and is_hit(ranked[0], lb["video"],
                                                                      lb["ts"]),
                "hit5": bool(lb["video"]) and any(is_hit(x, lb["video"], lb["ts"])
                                                  for x in ranked[:5]),
                "ref_uri": ranked[0]["ref_uri"] if ranked else None,
                "ref_ts_s": ranked[0]["ref_ts_s"] if ranked else None})
    return "\n".join(lines), per_query


def index_once(videos: list[Path], index_dir: Path) -> None:
    """Index ``videos`` into ``index_dir`` unless it already holds exactly them."""
    listing = index_dir.with_suffix(".txt")
    stamp = "".join(f"{v}\n" for v in videos)
    if (index_dir / "manifest.json").exists() and listing.exists() \
            and listing.read_text() == stamp:
        return
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(stamp)
    index.run(["--archive", str(listing), "--index", str(index_dir), *EMBEDDED])


def padded_fpr(videos: list[Path], padding: list[Path], negatives: list[dict],
               paths: list[Path], threshold: int, work: Path) -> str:
    """How the false-positive rate grows when the index grows with unrelated footage."""
    lines = ["", "| index | frame rows | distractor FPR (n, 95% CI) |", "|---|---|---|"]
    for name, footage_list in (("archive", videos), ("archive + padding", videos + padding)):
        index_dir = work / ("index" if name == "archive" else "index_padded")
        index_once(footage_list, index_dir)
        rows, _ = run_match(index_dir, paths, work / "runs" / f"pad_{index_dir.name}",
                            threshold, [])
        r = rates(negatives, rows)
        low, high = wilson(r["false_positives"], r["n_distractors"])
        n_rows = sum(p.rows for p in load_manifest(str(index_dir)).partitions)
        lines.append(f"| {name} | {n_rows} | {r['fpr']:.3f} ({r['false_positives']}/"
                     f"{r['n_distractors']}, {low:.3f}–{high:.3f}) |")
    return "\n".join(lines)


def run_baselines(videos: list[Path], labels: list[dict], paths: list[Path]
                  ) -> dict[str, tuple[dict[str, list[dict]], float]]:
    """Both baselines over the same images; time counts the queries, not building."""
    out = {}
    images = {lb["image"]: load_image(p.read_bytes()) for lb, p in zip(labels, paths,
                                                                        strict=True)}
    for name in baselines.HASHERS:
        framewise = baselines.FramewiseIndex.build(name, videos)
        began = time.monotonic()
        rows = {}
        for image_name, image in images.items():
            best = framewise.best(image)
            rows[image_name] = [best] if best else []
        out[name] = (rows, time.monotonic() - began)
    return out


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


def run(argv: list[str] | None = None) -> int:
    args, beam_args = parse(list(sys.argv[1:] if argv is None else argv))
    if args.verdicts:
        return calibrate_on_verdicts(args.verdicts)
    if not args.work:
        raise SystemExit("framematch eval: --work is required (or --verdicts OUT)")
    work = Path(args.work).resolve()
    videos = videos_in(Path(args.footage)) if args.footage else footage.ensure_archive()
    photos = photos_in(Path(args.distractors)) if args.distractors else \
        footage.distractor_photos()
    heldout = videos_in(Path(args.heldout)) if args.heldout else \
        footage.ensure_archive(profile="heldout")
    images = work / "images"
    print(f"== eval: {len(videos)} archive videos, {len(photos)} distractor photos, "
          f"{len(heldout)} held-out videos -> {work}")
    report = make_set(videos, images / "report", args.queries_per_video, args.seed, "source")
    negatives = (photo_distractors(photos, images / "photos", args.seed)
                 + make_set(heldout, images / "heldout", args.heldout_frames, args.seed,
                            "distractor"))
    folders = {"report": images / "report", "photos": images / "photos",
               "heldout": images / "heldout", "calibrate": images / "calibrate"}

    def path_of(lb: dict) -> Path:
        kind = "photos" if lb["image"].startswith("photo_") else (
            "heldout" if lb["kind"] == "distractor" else lb.get("split", "report"))
        return folders[kind] / lb["image"]

    index_dir = work / "index"
    index_once(videos, index_dir)
    prune_d = load_manifest(str(index_dir)).prune_d

    threshold = args.threshold
    if args.calibrate:  # other seed, and the other half of the distractors
        calib = make_set(videos, folders["calibrate"], args.queries_per_video,
                         args.seed + 1, "source")
        for lb in calib:
            lb["split"] = "calibrate"
        calib_labels = calib + negatives[1::2]
        threshold = calibrate(index_dir, calib_labels, [path_of(lb) for lb in calib_labels],
                              prune_d, args.target_fpr, work)
        negatives = negatives[0::2]
    labels = report + negatives
    paths = [path_of(lb) for lb in labels]
    methods: dict[str, tuple[dict[str, list[dict]], float]] = {}
    if not args.no_baselines:
        methods.update(run_baselines(videos, labels, paths))
    methods["framematch"] = run_match(index_dir, paths, work / "runs" / "hash", threshold,
                                      beam_args)
    methods["framematch+verify"] = run_match(index_dir, paths, work / "runs" / "verify",
                                             threshold, ["--verify", *beam_args])
    markdown, per_query = table(methods, labels)
    if args.pad:
        padding = videos_in(Path(args.pad_footage)) if args.pad_footage else \
            footage.ensure_archive(profile="bench")
        negative_labels = [lb for lb in labels if not lb["video"]]
        markdown += "\n" + padded_fpr(videos, padding, negative_labels,
                                      [path_of(lb) for lb in negative_labels], threshold, work)
    header = (f"framematch eval: threshold {threshold} (+ prune_d {prune_d}), "
              f"{sum(1 for lb in labels if lb['video'])} source queries, "
              f"{sum(1 for lb in labels if not lb['video'])} distractors; a hit is the right "
              f"video with the true time in the span or within {TOLERANCE_S} s of the best "
              f"frame.")
    print("\n" + header + "\n\n" + markdown)
    (work / "eval.md").write_text(header + "\n\n" + markdown + "\n")
    pq.write_table(pa.Table.from_pylist(per_query), work / "eval.parquet")
    (work / "eval.json").write_text(json.dumps({"threshold": threshold}, indent=1))
    return 0
