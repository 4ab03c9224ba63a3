"""The analyst's report as one self-contained static HTML page.

Everything is inside the file: thumbnails as base64 JPEG ``data:`` URIs, the CSS, an SVG
chart and a few lines of plain JavaScript for sorting, filtering and un-blurring. It opens
from disk or a bucket with no server and no network (the page loads nothing), and can be
mailed or archived with a case as one file.

This module only renders: ``pipelines/commands/report.py`` gathers the rows and pictures.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from PIL import Image

STATUSES = ("matched", "suppressed", "no_match", "failed")
STATUS_LABELS = {"matched": "matched", "suppressed": "rejected by analyst",
                 "no_match": "no match", "failed": "failed"}
FRAME_ROLES = ("best", "first", "last")


def hms(seconds: float) -> str:
    """Seconds as ``hh:mm:ss.mmm`` (rounded to the millisecond before splitting)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis / 1000:06.3f}"


def jpeg_data_uri(image: Image.Image, max_side: int, quality: int = 80) -> str:
    """A copy of ``image`` fitted into ``max_side`` px, as a base64 JPEG ``data:`` URI."""
    small = image.convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def name_of(uri: str) -> str:
    return PurePosixPath(uri).name or uri


@dataclass
class Entry:
    """One posted image of the report, with what to show for it.

    ``status`` is the query's, except ``suppressed``: matched, but an analyst rejected every
    matched pair. ``best`` is the first span (by rank) not rejected; ``frames`` holds a
    data URI or the reason there is no picture, per role in ``FRAME_ROLES``.
    """

    query: dict
    status: str
    posted: str | None = None  # data URI of the posted image, or None (not shown)
    posted_note: str | None = None  # why there is no posted image
    pdq: str | None = None  # PDQ hex of the posted image, for exchange with other tools
    best: dict | None = None
    frames: dict[str, str] = field(default_factory=dict)
    others: list[dict] = field(default_factory=list)  # the other spans, not rejected
    rejected: list[dict] = field(default_factory=list)
    verdict: dict | None = None  # latest verdict on the best pair


@dataclass
class Page:
    title: str
    entries: list[Entry]
    runs: list[dict]  # rows of the runs table (may be empty) for the selected runs
    selection: str  # which runs, in words
    notes: list[str] = field(default_factory=list)  # e.g. "posted images left out"
    blur: bool = False


CSS = """
:root { --ok:#1a7f37; --rej:#8250df; --none:#9a6700; --fail:#cf222e; --line:#d0d7de; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em; color: #1f2328; }
h1 { font-size: 1.4em; margin: 0 0 .2em } h2 { font-size: 1.1em; margin: 1.2em 0 .4em }
.muted { color: #59636e } code { font-size: 12px; word-break: break-all }
.summary { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start }
.chips span { display: inline-block; padding: .2em .7em; margin: 0 .3em .3em 0;
  border-radius: 1em; color: #fff; font-weight: 600 }
.s-matched { background: var(--ok) } .s-suppressed { background: var(--rej) }
.s-no_match { background: var(--none) } .s-failed { background: var(--fail) }
table { border-collapse: collapse; width: 100% }
th, td { border-bottom: 1px solid var(--line); padding: 6px; vertical-align: top;
  text-align: left }
thead th { position: sticky; top: 0; background: #f6f8fa; cursor: pointer; white-space: nowrap }
thead th.sorted-asc::after { content: " \\25B2" } thead th.sorted-desc::after { content: " \\25BC" }
figure { margin: 0 } td.pics { white-space: nowrap } td.pics figure { display: inline-block;
  margin: 0 4px 0 0; vertical-align: top } td.where, td.match { min-width: 14em }
figcaption { font-size: 11px; color: #59636e }
img.thumb { max-width: 240px; max-height: 240px; display: block; border: 1px solid var(--line) }
img.small { max-width: 110px; max-height: 110px }
body.blur img.thumb:not(.shown) { filter: blur(14px); cursor: pointer }
.status { color: #fff; border-radius: 4px; padding: 1px 6px; font-size: 12px; font-weight: 600 }
.verdict-confirmed { color: var(--ok); font-weight: 600 }
.controls { position: sticky; top: 0; background: #fff; padding: .5em 0; z-index: 2 }
.controls input[type=search] { width: 22em; padding: 4px }
dl { display: grid; grid-template-columns: max-content auto; gap: 0 .8em; margin: 0 }
dt { color: #59636e } dd { margin: 0; overflow-wrap: anywhere }
summary { color: #59636e; font-size: 12px; cursor: pointer }
td.st { max-width: 11em }
.nopic { width: 240px; padding: 1em 0; color: #59636e; font-size: 12px }
"""

SCRIPT = """
(function () {
  const body = document.body, rows = Array.from(document.querySelectorAll('tr.q'));
  const text = document.getElementById('filter'), status = document.getElementById('status');
  const shown = document.getElementById('shown'), blur = document.getElementById('blur');
  function filter() {
    const needle = text.value.trim().toLowerCase(), want = status.value;
    let n = 0;
    rows.forEach(function (row) {
      const ok = (!want || row.dataset.status === want) &&
                 (!needle || row.dataset.text.includes(needle));
      row.hidden = !ok; n += ok;
    });
    shown.textContent = n;
  }
  text.addEventListener('input', filter);
  status.addEventListener('change', filter);
  if (blur) blur.addEventListener('change', function () {
    body.classList.toggle('blur', blur.checked);
  });
  document.querySelectorAll('img.thumb').forEach(function (img) {
    img.addEventListener('click', function () { img.classList.toggle('shown'); });
  });
  document.querySelectorAll('thead th[data-col]').forEach(function (th) {
    th.addEventListener('click', function () {
      const col = Number(th.dataset.col), asc = !th.classList.contains('sorted-asc');
      document.querySelectorAll('thead th').forEach(function (h) {
        h.classList.remove('sorted-asc', 'sorted-desc');
      });
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      const key = function (row) { return row.cells[col].dataset.sort || ''; };
      const sorted = rows.slice().sort(function (a, b) {
        const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        const c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      const tbody = rows[0] && rows[0].parentNode;
      sorted.forEach(function (row) { tbody.appendChild(row); });
    });
  });
  filter();
})();
"""

# (header, sortable) per column; the sort keys are in each cell's data-sort.
COLUMNS = (("Status", True), ("Posted image", True), ("Archive frame · span first · last", False),
           ("Where", True), ("Match", True))


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _picture(src: str | None, caption: str, css: str = "thumb") -> str:
    if src is None or not src.startswith("data:image/"):
        return f'<figure><div class="nopic">{_e(src or "not shown")}</div>' \
               f"<figcaption>{_e(caption)}</figcaption></figure>"
    return (f'<figure><img class="{css}" src="{src}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _details(pairs: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _span_line(m: dict) -> str:
    return (f"{_e(name_of(m['ref_uri']))} at {hms(m['ref_ts_s'])} "
            f"(d={m['distance']}, score {m['score']:.3f})")


def _row(entry: Entry) -> str:
    q, best = entry.query, entry.best
    name = name_of(q["query_uri"])
    post = [(k, _e(q[k])) for k in ("case_id", "platform", "posted_at", "post_url") if q.get(k)]
    more = [("file", f"<code>{_e(q['query_uri'])}</code>"),
            ("sha256", f"<code>{_e(q['query_sha256'])}</code>"),
            *([("PDQ", f"<code>{_e(entry.pdq)}</code>")] if entry.pdq else []),
            ("run", f"{_e(q['run_id'])} ({_e(q['run_date'])})")]
    size = f" · {q['width']}×{q['height']}" if q.get("width") else ""
    posted = (_picture(entry.posted or entry.posted_note, name + size) + _details(post)
              + f"<details><summary>file, hashes, run</summary>{_details(more)}</details>")
    if best is None:
        pictures = ""
        where_sort, match_sort = "", ""
        where = _e(q.get("reason") or "")
        match = ""
    else:
        small = "thumb small"
        pictures = (_picture(entry.frames.get("best"), f"{hms(best['ref_ts_s'])} (best)")
                    + _picture(entry.frames.get("first"), hms(best["ref_ts_start_s"]), small)
                    + _picture(entry.frames.get("last"), hms(best["ref_ts_end_s"]), small))
        where_sort = f"{name_of(best['ref_uri'])} {best['ref_ts_s']:012.3f}"
        match_sort = f"{best['score']:.6f}"
        where = _details([
            ("video", f"<b>{_e(name_of(best['ref_uri']))}</b>"),
            ("time", f"<b>{hms(best['ref_ts_s'])}</b>"),
            ("span", f"{hms(best['ref_ts_start_s'])} – {hms(best['ref_ts_end_s'])}"),
            ("kept frames", str(best["n_frames"])),
            *([("title", _e(best["ref_title"]))] if best.get("ref_title") else []),
        ]) + f"<details><summary>uri</summary><code>{_e(best['ref_uri'])}</code></details>"
        match = _details([
            ("distance", f"{best['distance']} bits ({_e(best['hasher'])})"),
            ("score", f"{best['score']:.3f}"),
            ("variant", _e(best["variant"])),
            ("region", _e(best["ref_region"])),
            ("agreeing", _e(best["variants"].replace(",", ", "))),
            ("rank", str(best["rank"])),
        ])
    extra = []
    if entry.verdict:
        v = entry.verdict
        extra.append(f'<div class="verdict-{_e(v["verdict"])}">{_e(v["verdict"])} by '
                     f'{_e(v["analyst"])} {_e(v["at"])}{": " + _e(v["note"]) if v["note"] else ""}'
                     "</div>")
    if entry.others:
        extra.append("<div class=muted>also: " + "; ".join(_span_line(m) for m in entry.others)
                     + "</div>")
    if entry.rejected:
        extra.append(f"<div class=muted>{len(entry.rejected)} pair(s) rejected by an analyst, "
                     "hidden: " + "; ".join(_e(name_of(m["ref_uri"])) for m in entry.rejected)
                     + "</div>")
    if entry.status == "suppressed":
        where = "every matched pair was rejected by an analyst"
    status = (f'<span class="status s-{entry.status}">{STATUS_LABELS[entry.status]}</span>'
              + "".join(extra))
    text = " ".join(str(x) for x in (q["query_uri"], q.get("reason"), q.get("case_id"),
                                     best and best["ref_uri"], best and best["variant"],
                                     entry.status) if x).lower()
    return (f'<tr class="q" data-status="{entry.status}" data-query="{_e(q["query_uri"])}" '
            f'data-text="{_e(text)}">'
            f'<td class=st data-sort="{STATUSES.index(entry.status)}">{status}</td>'
            f'<td data-sort="{_e(name)}">{posted}</td>'
            f'<td class="pics">{pictures}</td>'
            f'<td class=where data-sort="{_e(where_sort)}">{where}</td>'
            f'<td class=match data-sort="{match_sort}">{match}</td></tr>')


def bar_chart(counts: list[tuple[str, int]], width: int = 520, bar: int = 18) -> str:
    """A horizontal SVG bar chart of (label, count), largest first; empty string if none."""
    if not counts:
        return ""
    label_w, gap, top = 190, 6, 4
    most = max(c for _, c in counts) or 1
    height = top + len(counts) * (bar + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="matched images per source video">']
    for i, (label, count) in enumerate(counts):
        y = top + i * (bar + gap)
        length = max(1, round((width - label_w - 40) * count / most))
        short = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar - 5}" text-anchor="end" font-size="12">'
            f"{_e(short)}<title>{_e(label)}</title></text>"
            f'<rect x="{label_w}" y="{y}" width="{length}" height="{bar}" fill="#1a7f37"/>'
            f'<text x="{label_w + length + 4}" y="{y + bar - 5}" font-size="12">{count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _runs_table(runs: list[dict]) -> str:
    if not runs:
        return "<p class=muted>No runs table for these runs (written by newer jobs).</p>"
    head = ("run", "date", "job", "started (UTC)", "inputs", "matched", "no match", "failed",
            "threshold / radius", "version")
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (
            r["run_id"], r["run_date"], r["job"], str(r["started"])[:19], r["n_inputs"],
            r["n_matched"], r["n_no_match"], r["n_failed"], f"{r['threshold']} / {r['radius']}",
            f"{r['framematch_version']} (preprocess {r['preprocess_version']})")) + "</tr>"
        for r in runs)
    return ("<table class=runs><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + rows + "</table>")


def render(page: Page) -> str:
    """The whole HTML document."""
    statuses = Counter(e.status for e in page.entries)
    per_video = Counter(name_of(e.best["ref_uri"]) for e in page.entries if e.best)
    chips = "".join(f'<span class="s-{s}">{STATUS_LABELS[s]}: {statuses[s]}</span>'
                    for s in STATUSES if statuses[s])
    options = "".join(f'<option value="{s}">{STATUS_LABELS[s]} ({statuses[s]})</option>'
                      for s in STATUSES if statuses[s])
    blur_box = (f'<label><input type=checkbox id=blur{" checked" if page.blur else ""}> '
                "blur pictures (click one to show it)</label>")
    has_images = any(e.posted or e.frames for e in page.entries)
    head = "".join(f'<th data-col="{i}">{h}</th>' if sortable else f"<th>{h}</th>"
                   for i, (h, sortable) in enumerate(COLUMNS))
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{_e(page.title)}</title><style>{CSS}</style></head>
<body class="{'blur' if page.blur else ''}">
<h1>{_e(page.title)}</h1>
<p class=muted>{_e(page.selection)} · {len(page.entries)} posted images · generated {generated}
{''.join(f'<br>{_e(n)}' for n in page.notes)}</p>
<div class=summary><div><h2>Images by status</h2><div class=chips>{chips}</div>
<h2>Runs</h2>{_runs_table(page.runs)}</div>
<div><h2>Matched images per source video</h2>
{bar_chart(per_video.most_common()) or '<p class=muted>none</p>'}</div></div>
<h2>Posted images</h2>
<div class=controls><input type=search id=filter placeholder="filter: file, video, reason, case…">
<select id=status><option value="">all statuses</option>{options}</select>
<span class=muted><span id=shown></span> shown</span> {blur_box if has_images else ''}</div>
<table id=queries><thead><tr>{head}</tr></thead><tbody>
{''.join(_row(e) for e in page.entries)}
</tbody></table>
<script>{SCRIPT}</script>
</body></html>
"""
