"""What analysts get: the runs table, DuckDB views, verdicts and the HTML report.

One real match run (edited screengrabs of the test archive, a photo in no video, a broken
file) is built once per session; the report is rendered from its Parquet output, with frames
re-extracted by FFmpeg, and checked against frames extracted independently.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image

from evaluation.edits import grab_frame, make_queries
from evaluation.footage import distractor_photos, load_truth
from pipelines import cli, match
from pipelines.commands import report
from pipelines.options import beam_options
from tests.conftest import EMBEDDED, build_once
from transforms.hashing.hashes import hamming, hash_batch
from transforms.index.store import load_manifest
from transforms.media.preprocess import thumbnail
from transforms.media.stills import extract_frame
from transforms.results.report_html import hms, render
from transforms.results.runs import run_record, write_run
from transforms.results.verdicts import record_verdict
from transforms.results.views import ANALYST_QUERIES, VIEWS, connect

RUN_DATE = datetime.date.today().isoformat()  # the analyst queries look at recent days


def table(out: Path, name: str) -> list[dict]:
    return ds.dataset(out / name, format="parquet", partitioning="hive").to_table().to_pylist()


@pytest.fixture(scope="module")
def results(index_dir: Path, archive: list[Path], shared_dir: Path) -> Path:
    work = shared_dir / "report"

    def build(directory: Path) -> None:
        queries = directory / "queries"
        make_queries(archive, {v: load_truth(v) for v in archive}, queries, 1, seed=8,
                     edits=["flip", "caption", "jpeg_resize"])
        (queries / "labels.json").unlink()
        shutil.copy(distractor_photos()[1], queries)
        (queries / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        started = datetime.datetime.now(datetime.UTC)
        argv = ["--index", str(index_dir), "--images", str(queries),
                "--out", str(directory / "out"), "--run_id", "r1", "--run_date", RUN_DATE,
                *EMBEDDED]
        match.run(argv)
        out = directory / "out"
        statuses = [q["status"] for q in table(out, "queries")]
        # what pipelines/match.run writes at its end (the same partition, so idempotent)
        write_run(str(out), run_record(
            "match", "r1", started, beam_options(argv), argv, str(index_dir),
            load_manifest(str(index_dir)), threshold=40, top_k=5, n_inputs=len(statuses),
            n_matched=statuses.count("matched"), n_no_match=statuses.count("no_match"),
            n_failed=statuses.count("failed"), n_match_rows=len(table(out, "matches")),
            n_dead_letters=len(table(out, "dead_letter"))), RUN_DATE)

    build_once(work, build)
    return work / "out"


@pytest.fixture(scope="module")
def page(results: Path):
    return report.make_report(str(results))


class Rows(HTMLParser):
    """The report's query rows and images, as a browser-independent parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "tr" and "q" in attributes.get("class", "").split():
            self.rows.append(attributes)
        elif tag == "img":
            self.images.append({**attributes, "row": len(self.rows) - 1})


def parse(document: str) -> Rows:
    parser = Rows()
    parser.feed(document)
    parser.close()
    return parser


def decode_data_uri(src: str) -> Image.Image:
    assert src.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def pdq(image: Image.Image) -> np.ndarray:
    return hash_batch(thumbnail(image)[np.newaxis], ["pdq"])["pdq"][0]


def test_sql_views_count_what_pyarrow_counts(results: Path, capsys):
    con = connect(str(results))
    for name in ("matches", "queries", "dead_letter", "runs"):
        (count,), = con.sql(f"select count(*) from {name}").fetchall()
        assert count == len(table(results, name)) > 0, name
    (run,) = table(results, "runs")
    statuses = [q["status"] for q in table(results, "queries")]
    assert (run["n_matched"], run["n_no_match"], run["n_failed"]) == (
        statuses.count("matched"), statuses.count("no_match"), statuses.count("failed"))
    assert run["n_inputs"] == len(statuses) and run["radius"] == 40 + run["prune_d"]
    assert run["index_batches"] and run["started"] <= run["ended"]
    assert cli.main(["sql", str(results)]) == 0
    printed = capsys.readouterr().out
    assert all(f"view {name} (" in printed for name in VIEWS)
    assert all(title in printed for title in ANALYST_QUERIES)
    failed = con.sql(list(ANALYST_QUERIES.values())[2]).fetchall()
    assert sorted(Path(r[1]).name for r in failed) == ["broken.jpg"]


def test_missing_tables_are_empty_views(tmp_path: Path):
    con = connect(str(tmp_path))
    for name in (*VIEWS, "latest_verdicts"):
        assert con.sql(f"select count(*) from {name}").fetchall() == [(0,)]
    for query in ANALYST_QUERIES.values():  # the README's queries run on a fresh directory
        assert con.sql(query).fetchall() == []


def test_report_frames_are_the_frames_at_the_reported_time(page):
    """The frame FFmpeg extracts at a match's pts is the frame plain FFmpeg grabs there
    (bit-exact at full size), and the page's 240 px JPEG of it stays within a few PDQ bits
    of it while any other match's frame is ~half the bits away."""
    matched = [e for e in page.entries if e.best]
    assert len(matched) >= 5
    exact, near, far = [], [], []
    for entry, other in zip(matched, matched[1:] + matched[:1], strict=True):
        uri, ts = entry.best["ref_uri"], entry.best["ref_ts_s"]
        truth = grab_frame(Path(uri), ts)
        exact.append(int(hamming(pdq(extract_frame(uri, ts, truth.size[0])), pdq(truth))))
        shown = pdq(decode_data_uri(entry.frames["best"]))
        near.append(int(hamming(shown, pdq(truth))))
        elsewhere = grab_frame(Path(other.best["ref_uri"]), other.best["ref_ts_s"])
        far.append(int(hamming(shown, pdq(elsewhere))))
        for role in ("first", "last"):
            assert decode_data_uri(entry.frames[role]).size[0] <= report.FRAME_WIDTH
    print(f"PDQ bits vs plain-ffmpeg frame at the reported time: full-size extract {exact}, "
          f"report thumbnail {near}; report thumbnail vs another match's frame {far}")
    assert max(exact) <= 2
    assert sorted(near)[len(near) // 2] <= 12 and max(near) <= 40  # title cards: flat + text
    assert min(far) > 90


def test_html_lists_every_query_once(page, results: Path):
    document = render(page)
    parsed = parse(document)
    queries = table(results, "queries")
    listed = [row["data-query"] for row in parsed.rows]
    assert sorted(listed) == sorted(q["query_uri"] for q in queries)
    statuses = {row["data-query"]: row["data-status"] for row in parsed.rows}
    assert statuses == {q["query_uri"]: q["status"] for q in queries}
    n_matched = sum(q["status"] == "matched" for q in queries)
    posted = sum(q["status"] != "failed" for q in queries)
    assert len(parsed.images) == 3 * n_matched + posted
    assert 'src="http' not in document and "<link" not in document  # self-contained
    reported = next(e.best for e in page.entries if e.best)
    assert hms(reported["ref_ts_s"]) in document
    kb = len(document.encode()) / 1024
    print(f"report: {kb:.0f} KB for {len(queries)} images, {n_matched} matched "
          f"({kb / n_matched:.1f} KB per matched image)")


def test_sensitive_modes_leave_pictures_out(results: Path):
    blind = report.make_report(str(results), query_images=False)
    parsed = parse(render(blind))
    n_matched = sum(e.best is not None for e in blind.entries)
    assert len(parsed.images) == 3 * n_matched  # archive frames only
    assert all(e.posted is None and e.pdq for e in blind.entries if e.query["status"] != "failed")
    bare = render(report.make_report(str(results), thumbnails=False, blur=True))
    assert not parse(bare).images and "data:image" not in bare
    assert '<body class="blur">' in bare


def test_verdicts_hide_rejected_pairs(results: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    shutil.copytree(results, out)
    best = [m for m in table(out, "matches") if m["rank"] == 1]
    rejected, confirmed = best[0], best[1]
    record_verdict(str(out), rejected["query_uri"], rejected["ref_uri"], "rejected", "ana")
    assert cli.main(["verdict", "--results", str(out), "--query", confirmed["query_sha256"],
                     "--video", confirmed["ref_uri"], "--verdict", "confirmed",
                     "--analyst", "bo", "--note", "same shot"]) == 0
    assert cli.main(["verdict", "--results", str(out), "--query", "nowhere.jpg",
                     "--video", "x.mp4", "--verdict", "confirmed"]) == 2
    assert "no decodable query" in capsys.readouterr().err
    con = connect(str(out))
    assert con.sql("select count(*) from latest_verdicts").fetchall() == [(2,)]
    new = con.sql(list(ANALYST_QUERIES.values())[0]).fetchall()
    assert rejected["query_uri"] not in {r[1] for r in new}
    assert confirmed["query_uri"] in {r[1] for r in new}

    entries = {e.query["query_uri"]: e for e in report.make_report(str(out)).entries}
    hidden = entries[rejected["query_uri"]]
    assert [m["ref_uri"] for m in hidden.rejected] == [rejected["ref_uri"]]
    assert hidden.best is None or hidden.best["ref_uri"] != rejected["ref_uri"]
    assert hidden.status == ("suppressed" if hidden.best is None else "matched")
    marked = entries[confirmed["query_uri"]]
    assert marked.verdict["verdict"] == "confirmed" and marked.verdict["analyst"] == "bo"


def test_report_command_writes_one_file(results: Path, tmp_path: Path):
    target = tmp_path / "r.html"
    assert cli.main(["report", "--results", str(results), "--run", "r1",
                     "--no-thumbnails", "--out", str(target)]) == 0
    assert len(parse(target.read_text()).rows) == len(table(results, "queries"))
    assert cli.main(["report", "--results", str(results), "--since", "2999-01-01",
                     "--out", str(tmp_path / "none.html")]) == 2


# Runs inside the page before its own script: records errors, then, once loaded, what the
# browser made of the images and rows, into <pre id="probe"> for --dump-dom to carry out.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  var imgs = Array.from(document.images).map(function (i) {
    return [i.complete, i.naturalWidth, i.naturalHeight, i.width]; });
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({errors: window.__errors, images: imgs,
    rows: document.querySelectorAll('tr.q').length,
    shown: document.getElementById('shown').textContent});
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(page, results: Path, tmp_path: Path):
    document = render(page)
    probed = tmp_path / "probed.html"
    probed.write_text(document.replace("<style>", PROBE + "<style>", 1))
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--hide-scrollbars", "--window-size=1366,900",
               "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run([*browser, "--virtual-time-budget=5000", "--dump-dom",
                           probed.as_uri()], capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [ln for ln in done.stderr.splitlines() if "CONSOLE" in ln and "rror" in ln]
    assert probe["errors"] == [] and console == []
    queries = table(results, "queries")
    assert probe["rows"] == len(queries) and probe["shown"] == str(len(queries))
    n_matched = sum(q["status"] == "matched" for q in queries)
    assert sum(w > 0 for _, w, _, _ in probe["images"]) >= 3 * n_matched
    assert all(ok and 0 < w <= 240 and 0 < h <= 240 for ok, w, h, _ in probe["images"])
    shot, plain = tmp_path / "report.png", tmp_path / "report.html"
    plain.write_text(document)
    subprocess.run([*browser, f"--screenshot={shot}", plain.as_uri()],
                   capture_output=True, timeout=60, check=True)
    assert Image.open(shot).size == (1366, 900)
    print(f"screenshot: {shot}")
