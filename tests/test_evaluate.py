"""The evaluation's own parts: baselines on real frames, rates, intervals."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from evaluation import baselines
from evaluation.edits import grab_frame
from evaluation.footage import distractor_photos
from evaluation.scoring import wilson
from pipelines import match
from pipelines.commands import evaluate
from pipelines.commands.evaluate import rates, rethreshold
from transforms.results.verdicts import record_verdict


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


def test_rates_and_rethreshold():
    labels = [{"image": "a", "video": "v.mp4", "ts": 3.0},
              {"image": "b", "video": "v.mp4", "ts": 9.0},
              {"image": "c", "video": None, "ts": None}]
    row = {"ref_uri": "/x/v.mp4", "ref_ts_s": 3.2, "ref_ts_start_s": 3.0,
           "ref_ts_end_s": 3.4, "distance": 20}
    far = dict(row, ref_ts_s=30.0, ref_ts_start_s=30.0, ref_ts_end_s=30.0, distance=45)
    rows = {"a": [row], "b": [far], "c": [far]}
    r = rates(labels, rows)
    assert (r["hits"], r["false_positives"], r["answered"]) == (1, 1, 3)
    assert r["precision"] == 1 / 3
    tight = rates(labels, rethreshold(rows, 40))
    assert (tight["hits"], tight["false_positives"], tight["answered"]) == (1, 0, 1)


def test_wilson_interval_is_honest_at_zero():
    low, high = wilson(0, 30)
    assert low == 0.0 and 0.10 < high < 0.13  # 0 of 30 only bounds the rate near 11%
    low, high = wilson(0, 300)
    assert high < 0.013


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
