"""``framematch stream`` on Prism: from a file landing to its row being readable in Parquet.

Run ``python -m bench.bench_stream`` (needs the Prism binary ``make setup`` builds). It
indexes the test archive, starts the stream on a fresh inbox with the default window, and
drops real screengrabs (JPEG, renamed into place) at a steady rate, in two phases: a slow
one for latency and a fast one for throughput. A reader polls the ``queries`` table with
pyarrow every 0.2 s, as an analyst's dashboard would, and notes when each image's row is
first readable. Printed: startup (command start to the first row), latency p50/p95/max per
phase, and the images/s each phase sustained (images over the time from the first drop to
the last row). Goal from the issue: p95 <= 10 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from evaluation.edits import grab_frame
from evaluation.footage import ensure_archive, load_truth
from pipelines import index, stream

PHASES = (("steady 2/s", 2.0, 60), ("fast 8/s", 8.0, 120))  # (name, images/s, images)
READ_EVERY_S = 0.2


def readable(out: Path) -> dict[str, float]:
    """query_uri → now, for every row readable at this moment."""
    if not (out / "queries").exists():
        return {}
    table = ds.dataset(out / "queries", format="parquet", partitioning="hive").to_table(
        columns=["query_uri"])
    now = time.monotonic()
    return dict.fromkeys(table.column("query_uri").to_pylist(), now)


def drop(images: list[bytes], rate: float, inbox: Path, tag: str, out: Path,
         seen: dict[str, float]) -> dict[str, float]:
    """Drop ``images`` at ``rate`` per second while polling the output; landing times."""
    landed = {}
    began = time.monotonic()
    for i, data in enumerate(images):
        while time.monotonic() < began + i / rate:
            for uri, t in readable(out).items():
                seen.setdefault(uri, t)
            time.sleep(min(READ_EVERY_S, max(0.0, began + i / rate - time.monotonic())))
        path = inbox / f"{tag}-{i:04d}.jpg"
        tmp = inbox / f".{path.name}.tmp"
        tmp.write_bytes(data)
        tmp.rename(path)
        landed[str(path)] = time.monotonic()
    return landed


def main() -> dict[str, str]:
    """Runs the stream and the drops; returns the headline figures."""
    prism = stream.prism_binary()
    if prism is None:
        sys.exit(f"no Prism binary at {stream.PRISM_BUILT} or on PATH: run make setup")
    os.environ.setdefault("NO_GCE_CHECK", "True")
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    archive = ensure_archive(profile="test")
    (work / "archive.txt").write_text("".join(f"{v}\n" for v in archive))
    index.run(["--archive", str(work / "archive.txt"), "--index", str(work / "index"),
               "--runner=FnApiRunner"])
    stills = [(v, (s["t_start"] + s["t_end"]) / 2) for v in archive
              for s in load_truth(v)["shots"] if not s["degenerate"]]
    grabs = []
    for video, ts in stills[:24]:
        path = work / "grab.jpg"
        grab_frame(video, ts).save(path, format="JPEG", quality=88)
        grabs.append(path.read_bytes())
    inbox, out = work / "inbox", work / "out"
    inbox.mkdir()
    total = sum(n for _, _, n in PHASES)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "stream", "--index", str(work / "index"),
         "--images", str(inbox), "--out", str(out), f"--prism_location={prism}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[str, float] = {}
    try:
        # Warm-up: one image, to time startup and keep it out of the latency figures.
        (inbox / "warmup.jpg").write_bytes(grabs[0])
        while str(inbox / "warmup.jpg") not in seen:
            seen.update(readable(out))
            time.sleep(READ_EVERY_S)
        startup = seen[str(inbox / "warmup.jpg")] - started
        print(f"startup (command start to the first row readable): {startup:.1f} s")
        figures = {"stream startup to first row": f"{startup:.1f} s"}
        for name, rate, n in PHASES:
            # Each image gets a unique byte (a JPEG comment) so that none is a re-post.
            images = [grabs[i % len(grabs)] + f"{name}{i}".encode() for i in range(n)]
            landed = drop(images, rate, inbox, name.split()[0], out, seen)
            first = min(landed.values())
            while not all(uri in seen for uri in landed) and time.monotonic() - first < 120:
                for uri, t in readable(out).items():
                    seen.setdefault(uri, t)
                time.sleep(READ_EVERY_S)
            lat = np.array([seen[u] - t for u, t in landed.items() if u in seen])
            done = max(seen[u] for u in landed if u in seen)
            print(f"{name}: {len(lat)}/{n} rows readable; latency p50 {np.median(lat):.1f} s, "
                  f"p95 {np.percentile(lat, 95):.1f} s, max {lat.max():.1f} s; sustained "
                  f"{len(lat) / (done - first):.1f} images/s")
            figures[f"stream {name}: latency p95 (goal <= 10 s), sustained"] = (
                f"{np.percentile(lat, 95):.1f} s, {len(lat) / (done - first):.1f} images/s, "
                f"{len(lat)}/{n} rows")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    files = len(list(out.glob("queries/*/*/*.parquet")))
    print(f"{total + 1} images; queries files after the stop's compaction: {files}; "
          f"work dir {work}")
    return figures


if __name__ == "__main__":
    main()
