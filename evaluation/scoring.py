"""Scoring match output against labels: recall@k per edit type, false positives, spans.

A query is right at rank k when one of its first k spans is on the labelled video and the
true time lies inside the span or within ``TOLERANCE_S`` of its best frame.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable

TOLERANCE_S = 1.5


def is_hit(match: dict, video: str, ts: float) -> bool:
    if match["ref_uri"].rsplit("/", 1)[-1] != video:
        return False
    inside = match["ref_ts_start_s"] - 1e-6 <= ts <= match["ref_ts_end_s"] + 1e-6
    return inside or abs(match["ref_ts_s"] - ts) <= TOLERANCE_S


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (honest at 0 of n, unlike k/n ± ...)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


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
    """Per edit type (and 'all'): recall@1, recall@5, median |Δt| and span width of hits.

    ``labels`` are source-bearing queries ({image, video, ts, edit}); ``matches_by_image``
    maps an image name to its match rows sorted by rank.
    """
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
