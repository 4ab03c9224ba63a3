"""``framematch report``: one static HTML page an analyst can confirm matches from by eye.

    framematch report --results OUT [--run RUN_ID | --since YYYY-MM-DD] --out report.html
                      [--no-query-images | --no-thumbnails] [--blur]

For each matched posted image: the image beside the archive frame at the matched time
(re-extracted with FFmpeg) and the span's first and last frames, with video, time, span,
distance, score, variant and region; unmatched and failed images with the reason; a summary
with a chart. Without ``--run``/``--since`` the latest run is reported; with ``--since``,
every run from that date on, each image once (from its latest run). Pairs an analyst
rejected (``framematch verdict``) are hidden, confirmed ones marked.

Sensitive material: ``--no-query-images`` leaves the posted images out of the file (their
sha256 and PDQ hash stay, for exchange with other tools); ``--no-thumbnails`` leaves every
picture out; ``--blur`` opens the page with pictures blurred until clicked.
"""

from __future__ import annotations

import argparse
import collections
import sys

import duckdb
import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipelines.options import CommandParser
from transforms.hashing.hashes import hash_batch
from transforms.media.images import ImageError, read_image
from transforms.media.preprocess import thumbnail
from transforms.media.stills import extract_frames
from transforms.results.report_html import Entry, Page, jpeg_data_uri, render
from transforms.results.views import connect

POSTED_SIDE = 240
FRAME_WIDTH = 320  # extracted width; shown at 240 (best) and 120 (span ends) px

# The selected runs' queries, each image once: the latest run that saw it wins.
QUERIES_SQL = """
    select q.* from queries q join selected s using (run_date, run_id)
    qualify row_number() over (partition by q.query_uri order by q.run_date desc,
                               q.run_id desc) = 1
    order by q.query_uri"""
MATCHES_SQL = """
    select m.*, v.verdict, v.analyst, v.note, v."at"
    from matches m join chosen c using (query_uri, run_date, run_id)
    left join latest_verdicts v using (query_sha256, ref_uri)
    order by m.query_uri, m.rank"""


def select_runs(con: duckdb.DuckDBPyConnection, run: str | None, since: str | None) -> str:
    """Create the ``selected`` (run_date, run_id) view; return the selection in words."""
    if run:
        where, params, words = "run_id = $run", {"run": run}, f"run {run}"
    elif since:
        where, params, words = "run_date >= $since", {"since": since}, f"runs since {since}"
    else:
        where, params, words = "true", {}, "latest run"
    latest = "" if run or since else "order by run_date desc, run_id desc limit 1"
    con.execute("create temp table selected as select distinct run_date, run_id from queries "
                f"where {where} {latest}", params)
    return words


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    result = con.sql(sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]


def build_entries(queries: list[dict], matches: list[dict]) -> list[Entry]:
    """Entries with verdicts applied: rejected pairs hidden, the best remaining span shown."""
    by_query = collections.defaultdict(list)
    for m in matches:
        by_query[m["query_uri"]].append(m)
    entries = []
    for q in queries:
        spans = by_query[q["query_uri"]]
        kept = [m for m in spans if m["verdict"] != "rejected"]
        rejected = [m for m in spans if m["verdict"] == "rejected"]
        status = "suppressed" if q["status"] == "matched" and not kept else q["status"]
        best = kept[0] if kept else None
        verdict = best if best and best["verdict"] else None
        entries.append(Entry(q, status, best=best, others=kept[1:], rejected=rejected,
                             verdict=verdict))
    return entries


def add_posted(entry: Entry, with_picture: bool) -> None:
    """The posted image (unless left out) and its PDQ hash, through the safe image intake."""
    try:
        image = read_image(entry.query["query_uri"])
    except ImageError as error:
        entry.posted_note = f"cannot show: {error}"
        return
    entry.pdq = bytes(hash_batch(thumbnail(image)[np.newaxis], ["pdq"])["pdq"][0]).hex()
    if with_picture:
        entry.posted = jpeg_data_uri(image, POSTED_SIDE)
    else:
        entry.posted_note = "posted image left out (--no-query-images)"


def add_frames(entries: list[Entry]) -> None:
    """Best, first and last frame of each shown span, one local copy per video."""
    wanted = collections.defaultdict(list)
    for e in entries:
        if e.best:
            wanted[e.best["ref_uri"]].append(e)
    for uri, group in wanted.items():
        times = {(e.query["query_uri"], role): e.best[key] for e in group
                 for role, key in (("best", "ref_ts_s"), ("first", "ref_ts_start_s"),
                                   ("last", "ref_ts_end_s"))}
        frames = extract_frames(uri, times.values(), FRAME_WIDTH)
        for e in group:
            for role in ("best", "first", "last"):
                frame = frames[times[e.query["query_uri"], role]]
                side = FRAME_WIDTH * 3 // 4 if role == "best" else FRAME_WIDTH * 3 // 8
                e.frames[role] = (f"frame unavailable: {frame}" if isinstance(frame, Exception)
                                  else jpeg_data_uri(frame, side))


def make_report(results: str, run: str | None = None, since: str | None = None,
                query_images: bool = True, thumbnails: bool = True,
                blur: bool = False) -> Page:
    con = connect(results)
    selection = select_runs(con, run, since)
    queries = rows(con, QUERIES_SQL)
    con.execute("create temp table chosen as select query_uri, run_date, run_id from "
                f"({QUERIES_SQL})")
    entries = build_entries(queries, rows(con, MATCHES_SQL))
    runs = rows(con, "select r.* from runs r join selected using (run_date, run_id) "
                     "order by r.started")
    notes = []
    if not thumbnails:
        notes.append("Pictures left out (--no-thumbnails): hashes and metadata only.")
    elif not query_images:
        notes.append("Posted images left out (--no-query-images): hashes and metadata only.")
    for entry in entries:
        if entry.query["status"] == "failed":
            entry.posted_note = "not decodable (see the reason)"
        else:
            add_posted(entry, query_images and thumbnails)
    if thumbnails:
        add_frames(entries)
    return Page(f"framematch report: {results}", entries, runs, selection, notes, blur)


def run(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="framematch report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="The match job's --out directory.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", default=None, help="Report this run id.")
    which.add_argument("--since", default=None, help="Report runs from this date (YYYY-MM-DD).")
    parser.add_argument("--out", required=True, help="HTML file to write (local or gs://).")
    pictures = parser.add_mutually_exclusive_group()
    pictures.add_argument("--no-query-images", dest="query_images", action="store_false",
                          help="Leave the posted images out (hashes and metadata only).")
    pictures.add_argument("--no-thumbnails", dest="thumbnails", action="store_false",
                          help="Leave every picture out, archive frames too.")
    parser.add_argument("--blur", action="store_true",
                        help="Open with pictures blurred; a click shows one.")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    page = make_report(args.results, args.run, args.since, args.query_images, args.thumbnails,
                       args.blur)
    if not page.entries:
        print(f"framematch report: no queries in {args.results} for the "
              f"{page.selection}", file=sys.stderr)
        return 2
    document = render(page).encode("utf-8")
    with FileSystems.create(args.out, mime_type="text/html") as f:
        f.write(document)
    matched = sum(e.best is not None for e in page.entries)
    print(f"report {args.out}: {len(page.entries)} images ({matched} matched), "
          f"{len(document) / 1024:.0f} KB")
    return 0
