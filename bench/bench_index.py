"""Indexing throughput: the index's decode + hash path against a plain FFmpeg decode + scale.

Run ``python -m bench.bench_index`` (the bench archive: >= 10 min of 720p real-photo footage,
built and cached by ``evaluation.footage`` the first time). In one run, FFmpeg pinned to one
thread in every arm, each figure a ratio of rates measured side by side:

1. Per video, single process, interleaved so that other work on a shared machine hits every
   arm alike: ``ffmpeg -threads 1 -i V -vf scale=128:128:flags=area -f null -`` against the
   index's own step (``DecodeSegment`` on the whole video: decode with true pts, key hash,
   pruning, regions, PDQ/pHash/dHash of kept rows, written), with the stored reference
   pictures (the default) and without, then a breakdown of the CPU each piece costs.
   Goal >= 0.9x with references.
2. The whole ``framematch index`` job with ``--workers 1`` against the FFmpeg arm's rate, and
   ``--workers 2`` against ``--workers 1``, plus the same job on an archive with no video in
   it, which prices the fixed start-up and write-out that a second worker cannot share.
   Goal >= 1.7x on an idle 2-core machine.
3. The vectorised pHash against an ``imagehash`` loop (``bench.bench_hashing.compare``) on
   thumbnails this archive decoded to. Goal >= 20x, identical bits.

Also printed: rows kept and index bytes per hour of video, from the job's own output.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import imagehash
import numpy as np
import pyarrow.dataset as ds
from apache_beam.options.pipeline_options import PipelineOptions

from bench.bench_hashing import compare
from evaluation.footage import ensure_archive
from pipelines import index
from transforms.hashing import hashes
from transforms.hashing.pdq import PdqSampler
from transforms.hashing.pruning import Pruner
from transforms.hashing.regions import REGION_BOXES, REGIONS
from transforms.index.segments import DecodeSegment, Segment
from transforms.media import decode, pictures, preprocess

WORK = Path("bench-out")
DEFAULTS = PipelineOptions([]).view_as(index.IndexOptions)  # the job's own defaults
HASH_SAMPLE = 5000  # decoded thumbnails for the pHash comparison


def load() -> str:
    """The 1-, 5- and 15-minute load averages, printed beside every figure (the machine is
    shared: a figure is only comparable with those measured beside it)."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} cores"


class Clock:
    """Seconds spent per named stage, summed over calls (wall, or this thread's CPU)."""

    def __init__(self, timer=time.perf_counter) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.timer = timer

    @contextmanager
    def __call__(self, stage: str):
        start = self.timer()
        try:
            yield
        finally:
            self.seconds[stage] += self.timer() - start


def ffmpeg_decode_scale(path: Path) -> None:
    """The reference arm: decode + area scale to 128x128 of the same stream, to nowhere."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-i", str(path),
         "-filter_threads", "1", "-map", "0:V:0", "-vf", "scale=128:128:flags=area",
         "-f", "null", "-"], check=True)  # fmt: skip


def index_step(path: Path, info: decode.VideoInfo, references: bool) -> tuple[int, int]:
    """The index job's per-segment step on the whole video, written to a scratch index:
    (frames decoded, rows)."""
    with tempfile.TemporaryDirectory() as scratch:
        step = DecodeSegment(index_dir=scratch, batch_id="bench", hashers=list(
            index.STORED_HASHERS), prune_d=DEFAULTS.prune_d, timeout_s=DEFAULTS.decode_timeout,
            references=references)
        step.setup()  # the DoFn's lifecycle, as a worker runs it
        try:
            ((_, result),) = step.process(Segment(0, str(path), "bench", 0, -math.inf, math.inf,
                                                  info.width, info.height))
        finally:
            step.teardown()
    if result.error:
        raise RuntimeError(f"{path}: {result.error}")
    return result.n_decoded, result.n_rows


def stages(path: Path, info: decode.VideoInfo, clock: Clock) -> np.ndarray:
    """This thread's CPU for each piece of the index path on one video (the decode arm is
    what Python spends reading the pipe); returns its thumbnails."""
    size = pictures.reference_size(info.width, info.height)
    with clock("read the pipe (FFmpeg's own CPU not counted)"):
        batches = list(decode.decode_frames(str(path), picture=size))
    pruner = Pruner(DEFAULTS.prune_d)
    sampler = PdqSampler((info.width, info.height), size)
    for batch in batches:
        with clock("key hash (every frame)"):
            key = hashes.phash256_regions(batch.thumbs, [preprocess.FULL])[0]
        with clock("flat test (every frame)"):
            flat = preprocess.is_flat(batch.thumbs)
        with clock("pruning (every frame)"):
            keep = pruner.feed(batch.pts, key, flat)
        kept = batch.thumbs[keep]
        with clock("regions (keys + flat, kept rows)"):
            hashes.phash256_regions(kept, REGION_BOXES[1:])
            for box in REGION_BOXES:
                preprocess.is_flat(kept, box)
        with clock("pHash + dHash (kept rows)"):
            hashes.hash_batch(kept, ["phash", "dhash"])
        with clock("pictures of kept rows (range expansion)"):
            chosen = batch.pictures(keep)
        with clock("PDQ (kept rows, vectorised)"):
            sampler.hash(chosen)
        with clock("reference JPEG encode (kept rows, own thread)"):
            for picture in chosen:
                pictures.encode_reference(picture)
    return np.concatenate([b.thumbs for b in batches])


def decode_path(videos: dict[Path, decode.VideoInfo]) -> tuple[dict[str, str], np.ndarray]:
    """Part 1: the three arms per video, interleaved, and the breakdown."""
    arms = Clock()
    breakdown = Clock(time.thread_time)
    frames = rows = 0
    samples = []
    for n, (video, info) in enumerate(videos.items(), 1):
        with arms("ffmpeg"):
            ffmpeg_decode_scale(video)
        with arms("index"):
            decoded_no_refs = index_step(video, info, references=False)
        with arms("index+refs"):
            decoded, rows_v = index_step(video, info, references=True)
        if decoded_no_refs != (decoded, rows_v):
            raise RuntimeError(f"{video}: the two index arms disagree")
        thumbs = stages(video, info, breakdown)
        samples.append(thumbs[:: max(1, len(thumbs) * len(videos) // HASH_SAMPLE)])
        frames += decoded
        rows += rows_v
        print(f"  [{n}/{len(videos)}] {video.name}: {decoded} frames, {rows_v} rows; {load()}",
              flush=True)
    per_s = {arm: frames / s for arm, s in arms.seconds.items()}
    print(f"\n(1) {frames:,} frames ({rows:,} rows) through each arm, FFmpeg -threads 1; {load()}")
    print(f"{'arm':58s} {'frames/s':>9s} {'vs ffmpeg':>9s}")
    labels = {"ffmpeg": "ffmpeg decode + scale=128:128:flags=area -> null",
              "index": "index step, --no_references",
              "index+refs": "index step, default (stored reference pictures)"}
    for arm, label in labels.items():
        print(f"{label:58s} {per_s[arm]:9,.0f} {per_s[arm] / per_s['ffmpeg']:8.2f}x")
    python_cpu = sum(breakdown.seconds.values())
    print(f"\nPython CPU of the index path, us per frame decoded (each piece on its own, this "
          f"thread's CPU time; {load()}):")
    for stage, seconds in breakdown.seconds.items():
        print(f"  {stage:52s} {1e6 * seconds / frames:8.1f}")
    print(f"  {'all of it':52s} {1e6 * python_cpu / frames:8.1f}  (FFmpeg's decode alone: "
          f"{1e6 / per_s['ffmpeg']:.0f} wall)")
    figures = {
        "index step frames/s vs ffmpeg decode+scale, with references (goal >= 0.9x)":
            f"{per_s['index+refs'] / per_s['ffmpeg']:.2f}x ({per_s['index+refs']:,.0f} vs "
            f"{per_s['ffmpeg']:,.0f} frames/s; {load()})",
        "index step frames/s vs ffmpeg decode+scale, --no_references":
            f"{per_s['index'] / per_s['ffmpeg']:.2f}x ({per_s['index']:,.0f} frames/s; {load()})",
        "Python CPU per frame vs FFmpeg's wall per frame":
            f"{python_cpu / frames * per_s['ffmpeg']:.2f}",
    }
    return figures, np.concatenate(samples)[:HASH_SAMPLE], per_s["ffmpeg"], frames


def job_index_dir(work: Path, workers: int) -> Path:
    """Where the job arm with ``workers`` writes its index (the match bench reuses it)."""
    return work / f"index-w{workers}"


def run_job(archive: Path, index_dir: Path, workers: int) -> float:
    """Wall seconds of ``framematch index`` into a fresh directory."""
    shutil.rmtree(index_dir, ignore_errors=True)
    start = time.perf_counter()
    index.run(["--archive", str(archive), "--index", str(index_dir), "--runner=FnApiRunner",
               "--workers", str(workers)])
    return time.perf_counter() - start


def whole_job(videos: dict[Path, decode.VideoInfo], work: Path, ffmpeg_rate: float,
              frames: int) -> dict[str, str]:
    """Part 2: the job with --workers 1 against FFmpeg's rate, --workers 2 against 1, and
    both on an archive with no video."""
    listing = work / "archive.txt"
    listing.write_text("".join(f"{v}\n" for v in videos))
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    (empty / "readme.txt").write_text("not a video: dead-lettered at listing\n")
    seconds, overhead, loads = {}, {}, {}
    for workers in (1, 2):
        overhead[workers] = run_job(empty, work / f"empty-index-w{workers}", workers)
        seconds[workers] = run_job(listing, job_index_dir(work, workers), workers)
        loads[workers] = load()
    segments = sum(len(decode.plan_segments(info, DEFAULTS.segment_seconds))
                   for info in videos.values())
    speedup = seconds[1] / seconds[2]
    variable = (seconds[1] - overhead[1]) / (seconds[2] - overhead[2])
    job_rate = frames / seconds[1]
    print(f"\n(2) framematch index, whole job: {len(videos)} videos, {segments} segments of "
          f"<= {DEFAULTS.segment_seconds:.0f} s, references stored")
    for workers in (1, 2):
        print(f"  --workers {workers}: {seconds[workers]:6.1f} s ({frames / seconds[workers]:,.0f} "
              f"frames/s); the same job on an archive with no video: {overhead[workers]:5.1f} s; "
              f"{loads[workers]}")
    print(f"  --workers 1 vs ffmpeg decode+scale: {job_rate / ffmpeg_rate:.2f}x "
          f"({job_rate:,.0f} vs {ffmpeg_rate:,.0f} frames/s)")
    print(f"  2 vs 1 workers: {speedup:.2f}x wall; {variable:.2f}x once the fixed cost of each "
          f"(start-up, empty stages, write-out) is taken off")
    return {"index job --workers 1 vs ffmpeg decode+scale":
            f"{job_rate / ffmpeg_rate:.2f}x ({job_rate:,.0f} vs {ffmpeg_rate:,.0f} frames/s; "
            f"{loads[1]})",
            "index job --workers 2 vs 1 (goal >= 1.7x)":
            f"{speedup:.2f}x ({seconds[1]:.0f} s vs {seconds[2]:.0f} s; {variable:.2f}x without "
            f"fixed cost; {loads[2]})"}


def index_size(index_dir: Path) -> dict[str, str]:
    """Rows kept and bytes per hour of video, read back from the job's output."""
    hours = ds.dataset(index_dir / "videos").to_table(columns=["duration"]).column(
        "duration").to_numpy().sum() / 3600
    region = ds.dataset(index_dir / "frames").to_table(columns=["region"]).column(
        "region").to_numpy()
    nbytes = {table: sum(f.stat().st_size for f in (index_dir / table).rglob("*.parquet"))
              for table in ("frames", "references")}
    whole = int((region == 0).sum())
    print(f"\nindex of {hours * 60:.1f} min of video: {whole / hours:,.0f} whole-frame rows and "
          f"{len(region) / hours:,.0f} rows with all {len(REGIONS)} regions per hour; "
          f"frames table {nbytes['frames'] / hours / 2**20:.1f} MiB/h, references table "
          f"{nbytes['references'] / hours / 2**20:.1f} MiB/h")
    return {"rows kept per hour (whole-frame / all regions)":
            f"{whole / hours:,.0f} / {len(region) / hours:,.0f}",
            "index MiB per hour (frames / references)":
            f"{nbytes['frames'] / hours / 2**20:.1f} / {nbytes['references'] / hours / 2**20:.1f}"}


def main(profile: str = "bench", work: Path = WORK) -> dict[str, str]:
    """Runs the three parts; returns the headline figures (name -> value with load)."""
    start = time.perf_counter()
    # Probed before any job: FFmpeg's children are forked, which a process that has run the
    # multi-process runner (gRPC threads) does not survive cleanly.
    videos = {v: decode.probe(str(v)) for v in ensure_archive(profile=profile)}
    total = sum(info.duration for info in videos.values())
    print(f"archive '{profile}': {len(videos)} videos, {total / 60:.1f} min "
          f"(ready in {time.perf_counter() - start:.0f} s); {load()}")
    work.mkdir(parents=True, exist_ok=True)
    figures, thumbs, ffmpeg_rate, frames = decode_path(videos)
    figures |= whole_job(videos, work, ffmpeg_rate, frames)
    figures |= index_size(job_index_dir(work, 1))
    phash = compare("phash", hashes.phash_input(thumbs), hashes.phash_codes, imagehash.phash)
    print(f"\n(3) pHash on {len(thumbs)} thumbnails decoded from this archive; {load()}")
    print(phash)
    figures["vectorised pHash vs imagehash loop (goal >= 20x)"] = (
        f"{phash.ratio:.1f}x, identical bits: {'yes' if phash.identical else 'NO'}; {load()}")
    return figures


if __name__ == "__main__":
    main()
