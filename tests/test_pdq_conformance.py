"""PDQ and vPDQ conformance, held against Meta's own implementations, never our own output:
Meta's published PDQ hashes of ThreatExchange's test images, and Meta's C++ ``vpdq`` (PyPI
``vpdq``, installed by ``make setup``) on real clips, in both directions of an exchange."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import vpdq
from PIL import Image

from evaluation.footage import data_files
from pipelines import index
from pipelines.commands import export_hashes, hash, import_hashes
from tests.conftest import EMBEDDED
from transforms.hashing import pdq
from transforms.hashing.vpdq import VPDQ_QUERY_SHARE as QUERY_SHARE
from transforms.hashing.vpdq import VideoHashes, match
from transforms.results import hash_formats
from transforms.results.hash_lists import VIDEOS_LIST

DATA = Path(__file__).parent / "data" / "threatexchange"


def bits(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def meta_vpdq(path: Path) -> list:
    """Meta's vPDQ of every frame (``vpdq -r 0``), one hashing thread."""
    return vpdq.computeHash(str(path), seconds_per_hash=0, thread_count=1)


def features(rows: list) -> VideoHashes:
    """Meta's vpdq features as ``VideoHashes``."""
    return VideoHashes(np.stack([np.frombuffer(bytes.fromhex(r.hex), np.uint8) for r in rows]),
                       np.array([r.quality for r in rows]), np.array([r.timestamp for r in rows]))


def lines_of(rows: list) -> VideoHashes:
    """Lines of a vPDQ file (``Line``) as ``VideoHashes``."""
    return VideoHashes(np.stack([np.frombuffer(r.pdq, np.uint8) for r in rows]),
                       np.array([r.quality for r in rows]), np.array([r.ts for r in rows]))


# --- images: Meta's published hashes ------------------------------------------------------

def test_hash_command_gives_metas_published_pdq(tmp_path: Path) -> None:
    """``framematch hash`` on ThreatExchange's test images: identical to every hash Meta
    published from the same pixels, within 10 bits of those its JPEG-decoding CLI printed."""
    with open(DATA / "expected.csv", newline="") as f:
        published = list(csv.DictReader(f))
    images = sorted({DATA / row["file"] for row in published})
    out = tmp_path / "hashes.jsonl"
    assert hash.run([*map(str, images), "--format", "json", "--out", str(out)]) == 0
    ours = {Path(r["uri"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    for row in published:
        got = ours[row["file"]]
        distance = bits(got["pdq"], row["hash"])
        print(f"{row['file']:20s} quality {got['quality']:3d} {row['rule']:8s} {distance:2d} bits")
        if row["rule"] == "exact":
            assert distance == 0, row
        elif got["quality"] >= 80:
            assert distance <= 10, row
    text = tmp_path / "hashes.txt"
    assert hash.run([str(images[0]), "--out", str(text)]) == 0
    (line,) = [h for _, h in hash_formats.parse(text.read_text(), "pdq")]
    assert (line.pdq.hex(), line.quality) == (ours[images[0].name]["pdq"],
                                              ours[images[0].name]["quality"])


def test_vectorised_pdq_is_metas_cpp_on_the_same_pixels() -> None:
    """The index's PDQ (one linear map per axis, batched) against Meta's C++ on the same grey
    pictures at their own size: the same bits and quality (float rounding may flip a bit that
    sits on the median; none did here)."""
    photos = [p for p in data_files().values() if p.suffix in (".png", ".jpg")]
    images = sorted(DATA.glob("*.jpg")) + photos
    exact = 0
    for path in images:
        grey = np.asarray(Image.open(path).convert("L"))
        expected, quality = pdq.reference(np.dstack([grey] * 3))
        codes, qualities = pdq.of_pictures(grey[np.newaxis])
        distance = bits(bytes(codes[0]).hex(), bytes(expected).hex())
        assert distance <= 2 and abs(int(qualities[0]) - quality) <= 1, path.name
        exact += distance == 0 and int(qualities[0]) == quality
    assert exact >= len(images) - 1


# --- videos: Meta's vpdq on real clips ----------------------------------------------------

@pytest.fixture(scope="module")
def hd_clip() -> Path:
    """A real 1280x720 clip at its own size (the test archive's videos are 640x360)."""
    return data_files()["bigbuckbunny.mp4"]


@pytest.fixture(scope="module")
def hd_index(hd_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hd") / "index"
    index.run(["--archive", str(hd_clip), "--index", str(directory), *EMBEDDED])
    return directory


def test_hash_command_on_a_video_is_metas_vpdq(archive: list[Path], hd_clip: Path) -> None:
    """Every frame, Meta's frame numbers, qualities and timestamps; the hashes are the C++
    on the pixels vpdq converts (a bit or two where FFmpeg's filter graph converts a pixel's
    colour differently from vpdq's own swscale call)."""
    for video in [hd_clip, *archive[:2]]:
        ours = hash.hash_video(str(video))
        theirs = meta_vpdq(video)
        assert [r.frame_number for r in ours] == [f.frame_number for f in theirs]
        assert [f"{r.ts:.3f}" for r in ours] == [f"{f.timestamp:.3f}" for f in theirs]
        quality = np.array([r.quality - f.quality for r, f in zip(ours, theirs, strict=True)])
        distances = [bits(r.pdq.hex(), f.hex) for r, f in zip(ours, theirs, strict=True)]
        print(f"{video.name}: {len(ours)} frames, {sum(d == 0 for d in distances)} identical, "
              f"max {max(distances)} bits from vpdq; quality differs on "
              f"{np.count_nonzero(quality)}")
        assert max(distances) <= 4 and np.mean(distances) < 0.5
        assert np.abs(quality).max() <= 1 and np.count_nonzero(quality) <= len(ours) // 100


class Line(NamedTuple):
    """One line of a vPDQ file as Meta's C++ writes it."""

    frame_number: int
    quality: int
    pdq: bytes
    ts: float


def exported_vpdq(index_dir: Path, out: Path) -> dict[str, list[Line]]:
    """``framematch export --format vpdq`` of an index, read back: uri -> lines in order."""
    export_hashes.run(["--index", str(index_dir), "--out", str(out), "--format", "vpdq"])
    with open(out / VIDEOS_LIST, newline="") as f:
        names = {row["file"]: row["uri"] for row in csv.DictReader(f)}
    files = {}
    for name, uri in names.items():
        fields = [line.split(",") for line in (out / name).read_text().splitlines()]
        files[uri] = [Line(int(n), int(q), bytes.fromhex(h), float(t)) for n, q, h, t in fields]
    return files


def test_exported_vpdq_is_within_a_few_bits_of_metas(index_dir: Path, hd_index: Path,
                                                     tmp_path: Path) -> None:
    """The index's stored PDQ (kept frames, from the picture FFmpeg scaled for it) against
    Meta's vpdq of the same frames: median <= 4 bits, 90th percentile <= 10, all <= 31,
    at vpdq's own frame numbers and timestamps."""
    clips = exported_vpdq(index_dir, tmp_path / "archive") | exported_vpdq(
        hd_index, tmp_path / "hd")
    assert len(clips) >= 6
    for uri, lines in sorted(clips.items()):
        theirs = {f.frame_number: f for f in meta_vpdq(Path(uri))}
        distances = []
        for line in lines:
            frame = theirs[line.frame_number]
            assert f"{line.ts:.3f}" == f"{frame.timestamp:.3f}"
            distances.append(bits(line.pdq.hex(), frame.hex))
        distances = np.array(distances)
        print(f"{Path(uri).parent.name}/{Path(uri).name:22s} {len(distances):4d} kept frames of "
              f"{len(theirs):5d}: "
              f"median {np.median(distances):.0f}, p90 {np.percentile(distances, 90):.0f}, "
              f"max {distances.max()} bits")
        assert np.median(distances) <= 4 and np.percentile(distances, 90) <= 10
        assert distances.max() <= 31


# --- both directions of an exchange ---------------------------------------------------------

def reencode(video: Path, out: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), *args, "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "30", "-pix_fmt", "yuv420p", "-an", str(out)],
                   check=True)
    return out


def test_metas_vpdq_of_a_clip_is_found_in_the_archive(index_dir: Path, archive: list[Path],
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """A partner hashes a clip cut from an archive video with Meta's vpdq and sends the file;
    ``framematch import --match`` into the archive's index names the right video, the moment
    the clip starts, and no other video."""
    video, start = archive[1], 12.0
    clip = reencode(video, tmp_path / "clip.mp4", "-ss", str(start), "-t", "8",
                    "-vf", "scale=480:270")
    sent = tmp_path / "partner" / "clip.txt"
    sent.parent.mkdir()
    sent.write_text("".join(
        hash_formats.vpdq_line(f.frame_number, f.quality, bytes.fromhex(f.hex), f.timestamp)
        + "\n" for f in meta_vpdq(clip)))  # vpdq-hash-video's file format
    archive_index = tmp_path / "index"
    shutil.copytree(index_dir, archive_index)  # the session's index stays as it was
    capsys.readouterr()
    imported = import_hashes.run(["--hashes", str(sent), "--index", str(archive_index),
                                  "--label", "case 7", "--match"])
    assert (imported.videos, imported.rows) == (1, 200)
    report = capsys.readouterr().out
    print(report)
    (line,) = [line for line in report.splitlines() if line.startswith("match ")]
    found = re.fullmatch(r"match case 7 -> (\S+) at (-?[\d.]+) s: (\d+) % of its frames, "
                         r"\d+ % of the video's", line)
    assert found and found.group(1) == str(video)
    assert abs(float(found.group(2)) - start) <= 0.5
    assert int(found.group(3)) >= QUERY_SHARE


def test_our_vpdq_matches_metas_of_a_reencoded_copy(index_dir: Path, archive: list[Path],
                                                   tmp_path: Path) -> None:
    """Our exported vPDQ of each video against Meta's vpdq of a re-encoded, resized copy,
    under python-threatexchange's vPDQ rule (the query's share of frames within 31 bits >=
    80 %, quality >= 50 both sides): the copy, as the query, matches its own video and no
    other; and the other way round our rows score what Meta's own hashes of the same frames
    of the original score (the share depends on the content -- a smooth pan survives
    re-encoding less well -- not on whose hashes they are)."""
    ours = exported_vpdq(index_dir, tmp_path / "ours")
    for n, video in enumerate(archive[:2]):
        copy = reencode(video, tmp_path / f"copy{n}.mp4", "-vf", "scale=854:480")
        theirs = features(meta_vpdq(copy))
        verdicts = {uri: match(theirs, lines_of(lines)) for uri, lines in ours.items()}
        own = verdicts[str(video)]
        original = {f.frame_number: f for f in meta_vpdq(video)}
        same_frames = features([original[line.frame_number] for line in ours[str(video)]])
        reverse = match(lines_of(ours[str(video)]), theirs)
        meta_reverse = match(same_frames, theirs)
        print(f"{video.name}: copy as query {own.query_share:.0f} %, ours as query "
              f"{reverse.query_share:.0f} % (Meta's hashes of the same frames "
              f"{meta_reverse.query_share:.0f} %); other videos' best "
              f"{max(v.query_share for u, v in verdicts.items() if u != str(video)):.0f} %")
        assert own.query_share >= QUERY_SHARE and abs(own.offset_s) <= 0.5  # rows are sparse
        assert all(v.query_share < QUERY_SHARE for u, v in verdicts.items() if u != str(video))
        assert abs(reverse.query_share - meta_reverse.query_share) <= 5
        assert reverse.target_share >= QUERY_SHARE
