"""Scoring match output against the truth: right moment, right video, false positives.

The exam's rules (issue 16), defined here once:

- **right video**: the query's first-ranked answer is on the labelled video;
- **right moment**: right video, and the answer's best frame (``ref_ts_s``) is within
  ``TOLERANCE_S`` of a true moment, or a true moment lies inside the reported span
  ``[ref_ts_start_s, ref_ts_end_s]`` when that span is at most ``MAX_SPAN_S`` long (a wider
  span does not say when). A query's truth is a set of intervals of equivalent moments
  (``evaluation.reels.equivalent_moments``): one point for an ordinary moment, a hold's whole
  interval, each copy of a repeated shot;
- **false positive**: a distractor (a picture in no indexed video) that gets any answer;
- every proportion comes with its 95% Wilson score interval.

Clips (issue 19): a clip's answer rows are aligned source segments; ``ref_ts_s`` is the
archive time of the clip's first frame (archive time = ``ref_ts_s`` + clip time). A source
segment is found when some row is on its video with the offset within ``CLIP_OFFSET_S``.

``is_hit`` and ``score`` are the older, lenient rule (any span width) kept for the match
tests, which check the matcher works, not how well.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath

TOLERANCE_S = 1.5
MAX_SPAN_S = 10.0
CLIP_OFFSET_S = 1.0
_EPS = 1e-6  # float slack on times that are frame timestamps

Interval = tuple[float, float]


def video_of(uri: str) -> str:
    """The file name of a reference URI (local path or gs://)."""
    return PurePosixPath(uri).name


def right_video(match: Mapping | None, video: str) -> bool:
    return bool(match) and video_of(match["ref_uri"]) == video


def right_moment(match: Mapping | None, video: str, truth: Sequence[Interval]) -> bool:
    """The exam's rule (module docstring) for one answer row against a truth set."""
    if not right_video(match, video):
        return False
    best = match["ref_ts_s"]
    if any(a - TOLERANCE_S - _EPS <= best <= b + TOLERANCE_S + _EPS for a, b in truth):
        return True
    start, end = match["ref_ts_start_s"], match["ref_ts_end_s"]
    narrow = end - start <= MAX_SPAN_S + _EPS
    return narrow and any(a <= end + _EPS and b >= start - _EPS for a, b in truth)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (honest at 0 of n, unlike k/n ± ...)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass(frozen=True)
class Rate:
    """k of n, with its Wilson interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def cell(self, digits: int = 2) -> str:
        """``0.93 (0.88–0.96)``, for the report's tables."""
        low, high = self.interval
        return f"{self.value:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"

    def count_cell(self) -> str:
        """``3/304 (0.4–2.9%)``, for rare events such as false positives."""
        low, high = self.interval
        return f"{self.k}/{self.n} ({100 * low:.1f}–{100 * high:.1f}%)"


def truth_of(label: Mapping) -> list[Interval]:
    """A source label's truth set: its ``truth`` intervals, or just its own time."""
    return [tuple(t) for t in label.get("truth") or [(label["ts"], label["ts"])]]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one source query fared."""

    moment: bool
    video: bool
    moment_at_5: bool


def judge(label: Mapping, ranked: Sequence[Mapping]) -> Verdict:
    truth = truth_of(label)
    top = ranked[0] if ranked else None
    return Verdict(right_moment(top, label["video"], truth), right_video(top, label["video"]),
                   any(right_moment(m, label["video"], truth) for m in ranked[:5]))


@dataclasses.dataclass(frozen=True)
class MomentScore:
    """Right moment and right video of a group of source queries."""

    moment: Rate
    video: Rate


def score_moments(labels: Iterable[Mapping], rows: Mapping[str, Sequence[Mapping]],
                  by: str = "edit") -> dict[str, MomentScore]:
    """Per value of ``label[by]`` (and ``all``): right moment and right video at rank 1.

    ``rows`` maps an image name to its answer rows sorted by rank.
    """
    tallies: dict[str, list[Verdict]] = defaultdict(list)
    for label in labels:
        verdict = judge(label, rows.get(label["image"], []))
        for key in (str(label[by]), "all"):
            tallies[key].append(verdict)
    return {key: MomentScore(Rate(sum(v.moment for v in vs), len(vs)),
                             Rate(sum(v.video for v in vs), len(vs)))
            for key, vs in tallies.items()}


def false_positives(negatives: Iterable[Mapping], rows: Mapping[str, Sequence[Mapping]]
                    ) -> dict[str, Rate]:
    """Per distractor kind (and ``all``): how many got any answer at all."""
    tallies: dict[str, list[bool]] = defaultdict(list)
    for label in negatives:
        answered = bool(rows.get(label["image"]))
        for key in (label["kind"], "all"):
            tallies[key].append(answered)
    return {key: Rate(sum(v), len(v)) for key, v in tallies.items()}


# ---- clips (issue 19) -----------------------------------------------------------------


def offset_ok(row: Mapping, segment: Mapping) -> bool:
    """A row on the segment's video whose offset is within ``CLIP_OFFSET_S`` of a true one.

    ``segment['offsets']`` are intervals of acceptable offsets (archive time of the clip's
    first frame), as ``truth`` is for images: one point, or a range inside a hold.
    """
    if not right_video(row, segment["video"]):
        return False
    return any(a - CLIP_OFFSET_S - _EPS <= row["ref_ts_s"] <= b + CLIP_OFFSET_S + _EPS
               for a, b in segment["offsets"])


def clip_found(label: Mapping, ranked: Sequence[Mapping]) -> bool:
    """Single-source clips: the first-ranked row is right. Compilations: every source
    segment is found by a distinct row (any rank)."""
    segments = label["segments"]
    if len(segments) == 1:
        return bool(ranked) and offset_ok(ranked[0], segments[0])
    used: set[int] = set()
    for segment in segments:
        hit = next((i for i, row in enumerate(ranked)
                    if i not in used and offset_ok(row, segment)), None)
        if hit is None:
            return False
        used.add(hit)
    return True


def score_clips(labels: Iterable[Mapping], rows: Mapping[str, Sequence[Mapping]]
                ) -> dict[str, Rate]:
    """Per clip edit (and ``all``): right video and offset; distractor clips (``video`` is
    None) are scored apart as ``distractor FP``."""
    found: dict[str, list[bool]] = defaultdict(list)
    for label in labels:
        ranked = rows.get(label["clip"], [])
        if label["segments"]:
            ok = clip_found(label, ranked)
            for key in (label["edit"], "all"):
                found[key].append(ok)
        else:
            found["distractor FP"].append(bool(ranked))
    return {key: Rate(sum(v), len(v)) for key, v in found.items()}


# ---- the older, lenient rule (kept for the match tests) --------------------------------


def is_hit(match: dict, video: str, ts: float) -> bool:
    """Right video with ``ts`` inside the span (any width) or near the best frame."""
    if video_of(match["ref_uri"]) != video:
        return False
    inside = match["ref_ts_start_s"] - _EPS <= ts <= match["ref_ts_end_s"] + _EPS
    return inside or abs(match["ref_ts_s"] - ts) <= TOLERANCE_S


@dataclasses.dataclass
class EditScore:
    edit: str
    n: int
    hits1: int
    hits5: int
    median_dt: float | None
    median_span: float | None

    @property
    def recall1(self) -> float:
        return self.hits1 / self.n if self.n else 0.0

    @property
    def recall5(self) -> float:
        return self.hits5 / self.n if self.n else 0.0


def score(labels: Iterable[dict], matches_by_image: dict[str, list[dict]]) -> dict[str, EditScore]:
    """Per edit type (and 'all'), with ``is_hit``: recall@1, recall@5, median |Δt| and span."""
    groups: dict[str, list[tuple[bool, bool, float | None, float | None]]] = defaultdict(list)
    for label in labels:
        ranked = matches_by_image.get(label["image"], [])
        top1 = ranked[:1]
        hit1 = any(is_hit(m, label["video"], label["ts"]) for m in top1)
        hit5 = any(is_hit(m, label["video"], label["ts"]) for m in ranked[:5])
        dt = abs(top1[0]["ref_ts_s"] - label["ts"]) if hit1 else None
        span = top1[0]["ref_ts_end_s"] - top1[0]["ref_ts_start_s"] if hit1 else None
        for key in (label["edit"], "all"):
            groups[key].append((hit1, hit5, dt, span))
    result = {}
    for edit, rows in sorted(groups.items()):
        dts = [r[2] for r in rows if r[2] is not None]
        spans = [r[3] for r in rows if r[3] is not None]
        result[edit] = EditScore(edit, len(rows), sum(r[0] for r in rows),
                                 sum(r[1] for r in rows),
                                 statistics.median(dts) if dts else None,
                                 statistics.median(spans) if spans else None)
    return result
