"""The exam's own parts: its scoring rules, intervals, methods, the clip contract, baselines,
and one real run of ``framematch eval`` on a miniature of its footage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from evaluation import baselines, reels
from evaluation.edits import grab_frame
from evaluation.footage import distractor_photos
from evaluation.scoring import (
    Rate,
    clip_found,
    false_positives,
    right_moment,
    right_video,
    score_clips,
    score_moments,
    wilson,
)
from pipelines import match
from pipelines.commands import evaluate
from pipelines.commands.evaluate import rates, rethreshold
from transforms.results.verdicts import record_verdict


def row(ts: float, start: float | None = None, end: float | None = None,
        video: str = "v.mp4", **extra) -> dict:
    return {"ref_uri": f"/archive/{video}", "ref_ts_s": ts,
            "ref_ts_start_s": ts if start is None else start,
            "ref_ts_end_s": ts if end is None else end, "distance": 10, **extra}


def test_right_moment_is_the_best_frame_near_the_truth_or_the_truth_in_a_narrow_span():
    point = [(20.0, 20.0)]
    assert right_moment(row(21.5), "v.mp4", point)  # 1.5 s away: still the moment
    assert not right_moment(row(21.6), "v.mp4", point)
    assert right_video(row(21.6), "v.mp4")  # ... but the video is right
    assert right_moment(row(27.0, 19.0, 29.0), "v.mp4", point)  # span of exactly 10 s
    wide = row(27.0, 18.0, 29.0)  # 11 s: a span that wide does not say when
    assert not right_moment(wide, "v.mp4", point) and right_video(wide, "v.mp4")
    assert not right_moment(row(20.0, video="w.mp4"), "v.mp4", point)
    assert not right_video(row(20.0, video="w.mp4"), "v.mp4")
    assert not right_moment(None, "v.mp4", point) and not right_video(None, "v.mp4")


def test_truth_sets_of_holds_and_repeated_shots():
    hold = [(10.0, 18.0)]  # every moment of a hold is the same moment
    assert right_moment(row(19.4), "v.mp4", hold) and right_moment(row(12.0), "v.mp4", hold)
    assert not right_moment(row(19.6), "v.mp4", hold)
    assert right_moment(row(25.0, 17.0, 26.0), "v.mp4", hold)  # narrow span reaching it
    assert not right_moment(row(30.0, 19.6, 31.0), "v.mp4", hold)
    repeat = [(3.0, 3.0), (41.0, 41.0)]  # the same offset into both copies
    assert right_moment(row(41.9), "v.mp4", repeat) and right_moment(row(2.0), "v.mp4", repeat)
    assert not right_moment(row(22.0), "v.mp4", repeat)


def test_equivalent_moments_follow_the_truth_json():
    truth = {"fps": 25, "shots": [
        {"kind": "title", "t_start": 0.0, "t_end": 2.0, "hold": False, "take": None},
        {"kind": "pan", "t_start": 2.0, "t_end": 10.0, "hold": False, "take": "a"},
        {"kind": "hold", "t_start": 10.0, "t_end": 16.0, "hold": True, "take": None},
        {"kind": "pan", "t_start": 16.0, "t_end": 24.0, "hold": False, "take": "a"}]}
    assert reels.equivalent_moments(truth, 5.0) == [(5.0, 5.0), (19.0, 19.0)]
    assert reels.equivalent_moments(truth, 19.0) == [(5.0, 5.0), (19.0, 19.0)]
    assert reels.equivalent_moments(truth, 12.0) == [(10.0, 15.96)]
    assert reels.equivalent_moments(truth, 1.0) == [(1.0, 1.0)]


def test_wilson_intervals():
    low, high = wilson(0, 30)
    assert low == 0.0 and high == pytest.approx(0.1135, abs=1e-4)  # 0 of 30: below ~11%
    assert wilson(15, 30) == pytest.approx((0.3315, 0.6685), abs=1e-4)
    assert wilson(30, 30)[0] == pytest.approx(0.8865, abs=1e-4) and wilson(30, 30)[1] == 1.0
    assert wilson(0, 300)[1] < 0.013
    assert Rate(3, 304).count_cell() == "3/304 (0.3–2.9%)"
    assert Rate(27, 30).cell() == "0.90 (0.74–0.97)"


def test_scores_per_edit_and_false_positives_per_kind():
    labels = [{"image": "a", "video": "v.mp4", "ts": 3.0, "edit": "mirror"},
              {"image": "b", "video": "v.mp4", "ts": 9.0, "edit": "mirror"},
              {"image": "c", "video": "v.mp4", "ts": 9.0, "edit": "caption",
               "truth": [[8.0, 12.0]]},
              {"image": "d", "video": "v.mp4", "ts": 9.0, "edit": "caption"}]
    rows = {"a": [row(3.2)], "b": [row(30.0), row(9.0)], "c": [row(12.9)]}
    scores = score_moments(labels, rows)
    assert (scores["mirror"].moment.k, scores["mirror"].video.k) == (1, 2)  # rank 1 only
    assert (scores["caption"].moment.k, scores["caption"].video.k) == (1, 1)
    assert (scores["all"].moment.k, scores["all"].moment.n) == (2, 4)
    negatives = [{"image": "x", "kind": "photo"}, {"image": "y", "kind": "photo"},
                 {"image": "z", "kind": "title_card"}]
    fp = false_positives(negatives, {"x": [row(1.0)], "z": []})
    assert (fp["photo"].k, fp["photo"].n, fp["title_card"].k, fp["all"].k) == (1, 2, 0, 1)


def test_rates_and_rethreshold_keep_what_local_features_verified():
    labels = [{"image": "a", "video": "v.mp4", "ts": 3.0},
              {"image": "b", "video": "v.mp4", "ts": 9.0},
              {"image": "c", "video": None, "ts": None}]
    near = row(3.2, distance=20)
    far = row(30.0, distance=45)
    rescued = row(9.0, distance=70, verified=True)
    rows = {"a": [near], "b": [far, rescued], "c": [far]}
    r = rates(labels, rows)
    assert (r["moment"], r["video"], r["false_positives"]) == (1, 2, 1)
    tight = rates(labels, rethreshold(rows, 40))
    assert (tight["moment"], tight["video"], tight["false_positives"]) == (2, 2, 0)


def test_clip_scoring_offsets_compilations_and_distractors():
    one = {"clip": "c1.mp4", "edit": "gif", "segments": [
        {"video": "v.mp4", "offsets": [[12.0, 12.0]], "query_start": 0, "query_end": 5}]}
    assert clip_found(one, [row(12.9)]) and not clip_found(one, [row(13.2)])
    assert not clip_found(one, [row(12.0, video="w.mp4")])
    both = {"clip": "c2.mp4", "edit": "compilation", "segments": [
        {"video": "v.mp4", "offsets": [[12.0, 12.0]], "query_start": 0, "query_end": 3},
        {"video": "w.mp4", "offsets": [[-3.0, 4.0]], "query_start": 3, "query_end": 6}]}
    assert clip_found(both, [row(2.0, video="w.mp4"), row(12.3)])
    assert not clip_found(both, [row(12.3)])  # one source found is not enough
    stray = {"clip": "d.mp4", "edit": "gif", "segments": []}
    scores = score_clips([one, both, stray], {"c1.mp4": [row(12.0)], "d.mp4": [row(1.0)]})
    assert (scores["gif"].k, scores["compilation"].k, scores["all"].k) == (1, 0, 1)
    assert (scores["distractor FP"].k, scores["distractor FP"].n) == (1, 1)


def test_methods_are_match_flags_and_unknown_flags_are_refused():
    methods = evaluate.default_methods()
    assert [] in methods.values() and len(methods) == 2
    flags = evaluate.match_flags()
    assert all(f in flags for m in methods.values() for f in m)
    assert evaluate.methods_from(["", "--verify --verify_k 5"]) == {
        "match": [], "match --verify --verify_k 5": ["--verify", "--verify_k", "5"]}
    with pytest.raises(SystemExit, match="no option --no_such_flag"):
        evaluate.methods_from(["--no_such_flag"])


@pytest.mark.skipif(not evaluate.clips_supported(), reason="the match job accepts clips")
def test_clips_fail_clearly_while_the_match_job_takes_no_clips(tmp_path: Path):
    with pytest.raises(SystemExit, match="does not accept clips yet"):
        evaluate.run(["--work", str(tmp_path), "--clips"])
    assert not any(tmp_path.iterdir())  # nothing built, nothing pretended


def test_baselines_find_a_sampled_frame_and_not_a_photo(archive: list[Path]):
    video = archive[-2]  # a real clip
    times, frames = baselines.frames_at_1fps(video)
    for name in baselines.HASHERS:
        framewise = baselines.FramewiseIndex.build(name, [video])
        assert len(framewise.hashes) >= 3
        best = framewise.best(Image.fromarray(frames[2]))
        assert best is not None and best["ref_uri"] == str(video)
        assert best["ref_ts_s"] == times[2] and best["distance"] == 0
        assert framewise.best(Image.open(distractor_photos()[0])) is None


def test_calibration_on_analyst_verdicts(index_dir: Path, archive: list[Path],
                                         tmp_path: Path, capsys):
    """Analysts' verdicts are labels: the sweep counts confirmed and rejected pairs kept."""
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    grab_frame(archive[-1], 2.0).save(images / "post.png")
    match.run(["--index", str(index_dir), "--images", str(images), "--out", str(out),
               "--runner=FnApiRunner"])
    record_verdict(str(out), str(images / "post.png"), str(archive[-1]), "confirmed", "t")
    assert evaluate.run(["--verdicts", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 confirmed, 0 rejected" in printed
    assert "    48      1 of 1" in printed


@pytest.fixture(scope="session")
def mini_reels() -> dict[str, list[Path]]:
    """A miniature of the exam's footage: the same recipes at 320x180, shots at 1/4 length."""
    return {split: reels.ensure_reels(split, size=(320, 180), time_scale=0.25)
            for split in ("report", "calibration", "heldout_report", "heldout_calibration")}


def test_eval_runs_end_to_end_on_a_miniature(mini_reels: dict[str, list[Path]],
                                             tmp_path: Path):
    """The whole exam for real (indexes, calibration, both modes, padded index) on small
    sets: every edit gets a row, the figures are consistent, the threshold comes from the
    calibration split."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(reels._package_data("skimage") / "brick.png", photos)
    folder = {split: str(videos[0].parent) for split, videos in mini_reels.items()}
    footage = tmp_path / "footage"  # three of the report reels: a pan, holds, a real clip
    footage.mkdir()
    for video in mini_reels["report"]:
        if video.stem in ("pans", "holds", "bikes"):
            for path in (video, video.with_suffix(".json")):
                (footage / path.name).symlink_to(path)
    edits = ["crop10_asym", "mirror", "screenshot"]
    work = tmp_path / "work"
    assert evaluate.run([
        "--work", str(work), "--footage", str(footage),
        "--calibration_footage", folder["calibration"], "--heldout", folder["heldout_report"],
        "--pad_footage", folder["heldout_calibration"], "--distractors", str(photos),
        "--edits", ",".join(edits), "--moments", "6", "--calibration_moments", "2",
        "--distractor_scale", "0.03", "--calibrate", "--method=", "--method=--verify",
        "--no_baselines"]) == 0
    summary = json.loads((work / "eval.json").read_text())
    assert summary["threshold"] in evaluate.SWEEP
    assert summary["padded_index_rows"] > summary["index_rows"]
    report = (work / "eval.md").read_text()
    for name in ("match", "match --verify"):
        figures = summary["methods"][name]
        assert set(figures["per_edit"]) == {*edits, "all"}
        assert figures["per_edit"]["all"]["n"] == 3 * figures["per_edit"]["mirror"]["n"]
        assert all(e["moment"] <= e["video"] for e in figures["per_edit"].values())
        assert figures["fp_padded"] is not None
        assert f"### {name}\n" in report
    assert "| **all** |" in report and "FP, padded index" in report
    queries = pq.read_table(work / "eval.parquet").to_pylist()
    sources = [q for q in queries if q["video"]]
    assert sources and all(q["right_video"] or not q["right_moment"] for q in sources)
    assert {q["kind"] for q in queries} >= {"source", "photo", "heldout", "title_card",
                                            "near_uniform", "night"}
