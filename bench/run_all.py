"""Every benchmark in sequence, then one table of their headline figures (``make bench``).

    python -m bench.run_all [--quick]

Each benchmark prints its own full output as it runs; its ``main()`` returns its headline
figures (name -> value), collected into the closing table with the load average seen while
that benchmark ran (the machine may be shared: read ratios, not absolute rates, and read
them beside the load). The stream benchmark runs only when the Prism binary ``make setup``
builds is there. A benchmark that fails is reported in the table and makes the exit status
non-zero; the others still run.

``--quick`` indexes and matches the small test archive instead of the >= 10 min bench one
and shrinks the synthetic hashing and join sets, a smoke test of the whole harness in a
few minutes; its figures are not the ones to quote.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.bench_index import job_index_dir
from pipelines.stream import PRISM_BUILT

WORK = Path("bench-out")


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every few seconds while a benchmark runs."""

    def __init__(self, every_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.samples = [os.getloadavg()[0]]
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        return f"{sum(self.samples) / len(self.samples):.1f} (max {max(self.samples):.1f})"


def benchmarks(quick: bool, work: Path) -> list[tuple[str, dict[str, Any]]]:
    """(module of bench/, keyword arguments of its main) in order; match reuses the index
    that the index benchmark's one-worker job wrote."""
    profile = "test" if quick else "bench"
    runs = [
        ("bench_hashing", {"n": 500} if quick else {}),
        ("bench_join", {"n_rows": 100_000} if quick else {}),
        ("bench_verify", {}),
        ("bench_index", {"profile": profile, "work": work}),
        ("bench_match", {"profile": profile, "work": work,
                         "index_dir": job_index_dir(work, workers=1)}),
    ]
    if PRISM_BUILT.is_file():
        runs.append(("bench_stream", {}))
    return runs


def run_one(module: str, kwargs: dict[str, Any]) -> dict[str, str]:
    """One benchmark's ``main``, in the fresh process it is given."""
    try:
        return importlib.import_module(f"bench.{module}").main(**kwargs) or {}
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="Small test archive and data sets: a smoke test, not figures.")
    parser.add_argument("--work", type=Path, default=WORK, help="Scratch directory.")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_GCE_CHECK", "True")
    began = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []
    failed = []
    # Each benchmark in a fresh (spawned) process, as `python -m bench.<module>` would run:
    # no runner, gRPC or cache state leaks from one into the next.
    spawn = multiprocessing.get_context("spawn")
    for module, kwargs in benchmarks(args.quick, args.work):
        name = module.removeprefix("bench_")
        print(f"\n===== {name} =====", flush=True)
        sampler = LoadSampler()
        sampler.start()
        start = time.perf_counter()
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                figures = pool.submit(run_one, module, kwargs).result()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - one must not hide the others
            traceback.print_exc()
            figures = {"FAILED": f"{type(e).__name__}: {e}"}
            failed.append(name)
        sampler.done.set()
        sampler.join()
        print(f"===== {name}: {time.perf_counter() - start:.0f} s, load average "
              f"{sampler.summary()} =====", flush=True)
        rows += [(name, figure, value, sampler.summary()) for figure, value in figures.items()]
    if not PRISM_BUILT.is_file():
        rows.append(("stream", "skipped", f"no Prism binary at {PRISM_BUILT}", "-"))
    width = max(len(figure) for _, figure, _, _ in rows)
    print(f"\n===== summary{' (--quick: smoke test, not figures)' if args.quick else ''}: "
          f"{time.perf_counter() - began:.0f} s on {os.cpu_count()} cores =====")
    print(f"{'bench':8s} {'figure':{width}s}  {'load avg':>16s}  value")
    for name, figure, value, load in rows:
        print(f"{name:8s} {figure:{width}s}  {load:>16s}  {value}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
