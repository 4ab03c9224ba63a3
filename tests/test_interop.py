"""Hash interop with ThreatExchange: PDQ against Meta's published hashes, ``framematch hash``
on real images and footage, importing received lists, exporting the index, round trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pdqhash
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from evaluation.edits import grab_frame
from evaluation.footage import ARCHIVE_PHOTOS, DISTRACTOR_PHOTOS, data_files, load_truth
from pipelines import cli, match
from pipelines.commands import export_hashes, hash, import_hashes
from schemas.manifest import partition_dir
from schemas.records import DEAD_LETTER_SCHEMA
from transforms.hashing import hashes, pdq
from transforms.index.store import live_frames, live_videos, load_manifest
from transforms.io import parquet
from transforms.media import preprocess
from transforms.media.images import load_image
from transforms.results import hash_formats
from transforms.search.mih import brute_force, flip_bits
from transforms.search.pdq_rows import PDQ_MIN_QUALITY, PdqRows, search_pdq

DATA = Path(__file__).parent / "data" / "threatexchange"
HEX = 64


def reference_pdq(rgb: np.ndarray) -> tuple[str, int]:
    """Meta's C++ (pdqhash) on an RGB array, in Meta's hex."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    return bytes(np.packbits(bits.astype(np.uint8))).hex(), int(quality)


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def real_images() -> list[Path]:
    """Meta's test images and scikit-image's photographs."""
    photos = data_files()
    return sorted(DATA.glob("*.jpg")) + [photos[n] for n in ARCHIVE_PHOTOS + DISTRACTOR_PHOTOS]


def index_pdq_rows(index: Path) -> tuple[set[tuple], object]:
    """{(uri, pdq hex, quality, ts ms)} of an index's live whole-frame PDQ rows, and frames."""
    manifest = load_manifest(str(index))
    videos = live_videos(str(index), manifest)
    frames = live_frames(str(index), manifest, videos)
    uris = dict(zip(videos.column("video_id").to_pylist(), videos.column("uri").to_pylist(),
                    strict=True))
    rows = {(uris[r["video_id"]], r["pdq"].hex(), r["quality"], round(r["ts_start"], 3))
            for r in frames.to_pylist() if r["region"] == 0 and r["pdq"] is not None}
    return rows, frames.append_column("uri", [[uris[v] for v in
                                               frames.column("video_id").to_pylist()]])


# --- PDQ against Meta's published hashes -------------------------------------------------

def test_published_pdq_hashes_reproduced() -> None:
    """Meta's rule: the reference fed the same pixels gives the identical hash; from another
    JPEG decoder, within 10 bits at quality >= 80. Expected values are Meta's, not ours."""
    with open(DATA / "expected.csv", newline="") as f:
        published = list(csv.DictReader(f))
    assert {p["file"] for p in published} == {p.name for p in DATA.glob("*.jpg")}
    for row in published:
        ours, quality = reference_pdq(np.asarray(load_image((DATA / row["file"]).read_bytes())))
        bits = distance(ours, row["hash"])
        print(f"{row['file']:20s} quality {quality:3d} {row['rule']:8s} {bits:2d} bits")
        if row["rule"] == "exact":
            assert bits == 0, row
        elif quality >= 80:
            assert bits <= 10, row


def test_hash_command_is_metas_pdq_of_the_whole_image(tmp_path: Path) -> None:
    """``framematch hash`` gives Meta's C++ PDQ of the whole image, bit for bit, and the
    index's search key of its canonical thumbnail; the text lines read back."""
    images = real_images()
    out = tmp_path / "hashes.jsonl"
    assert hash.run([*map(str, images), "--format", "json", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["uri"] for r in rows] == [str(p) for p in images]
    for path, row in zip(images, rows, strict=True):
        picture = load_image(path.read_bytes())
        assert (row["pdq"], row["quality"]) == reference_pdq(np.asarray(picture))
        key = hashes.phash256_regions(preprocess.thumbnail(picture)[None], [preprocess.FULL])
        assert row["key"] == bytes(key[0, 0]).hex() and row["frame_number"] is None

    text = tmp_path / "hashes.txt"
    assert cli.main(["hash", *map(str, images[:3]), "--out", str(text)]) == 0
    parsed = [h for _, h in hash_formats.parse(text.read_text(), "pdq")]
    assert [(h.pdq.hex(), h.quality, h.label) for h in parsed] == [
        (r["pdq"], r["quality"], r["uri"]) for r in rows[:3]]


def test_hash_video_lists_every_frame_and_the_index_keeps_some_of_them(
        index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """vPDQ lines of every frame, numbered and timed as vpdq does; the index's exported rows
    of the same video are some of those frames, each within a few bits of its line."""
    manifest = load_manifest(str(index_dir))
    videos = live_videos(str(index_dir), manifest)
    (video,) = [v for v in videos.to_pylist() if v["uri"].endswith("bigbuckbunny.mp4")]
    capsys.readouterr()
    assert hash.run([video["uri"]]) == 0
    lines = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    fps = load_truth(Path(video["uri"]))["fps"]
    assert [int(n) for n, _, _, _ in lines] == list(range(len(lines)))
    assert all(ts == f"{int(n) / fps:.3f}" for n, _, _, ts in lines)
    assert len(lines) == video["n_frames_decoded"]

    out = tmp_path / "bbb.parquet"
    assert hash.run([video["uri"], "--format", "parquet", "--out", str(out),
                     "--seconds_per_hash", "1"]) == 0
    every_second = pq.read_table(out).to_pylist()
    assert [r["frame_number"] for r in every_second] == list(range(0, len(lines), int(fps)))

    written = export_hashes.run(["--index", str(index_dir), "--out", str(tmp_path / "x")])
    (name,) = [n for n in written if n.endswith("bigbuckbunny.mp4.txt")]
    exported = [line.split(",") for line in (tmp_path / "x" / name).read_text().splitlines()]
    assert 0 < len(exported) < len(lines)
    for number, _, pdq_hex, ts in exported:
        _, _, full, full_ts = lines[int(number)]
        assert ts == full_ts and distance(pdq_hex, full) <= 31


# --- importing received lists ------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_hashes() -> list[tuple[bytes, int]]:
    """Real PDQ hashes (and qualities) of photographs: Meta's PDQ of each whole photo."""
    photos = data_files()
    hashed = [reference_pdq(np.asarray(load_image(photos[n].read_bytes())))
              for n in ARCHIVE_PHOTOS]
    return [(bytes.fromhex(code), quality) for code, quality in hashed]


def write_lines(path: Path, lines: list[tuple[str, bool]]) -> list[int]:
    """Write lines; return the 1-based numbers of those flagged bad."""
    path.write_text("".join(f"{text}\n" for text, _ in lines))
    return [n for n, (_, bad) in enumerate(lines, start=1) if bad]


def dead_letters(index: Path) -> set[tuple[str, str, str]]:
    manifest = load_manifest(str(index))
    tables = [parquet.read_table(partition_dir(str(index), "dead_letter", p.batch_id),
                               DEAD_LETTER_SCHEMA) for p in manifest.partitions]
    return {(r["uri"], r["stage"], r["error"].split(":")[0]) for t in tables
            for r in t.to_pylist()}


def test_import_pdq_csv_and_vpdq_lists_with_dead_letters(
        tmp_path: Path, photo_hashes: list[tuple[bytes, int]]) -> None:
    (a, qa), (b, qb), (c, qc), (d, qd) = photo_hashes[:4]
    plist = tmp_path / "partner.txt"
    bad_pdq = write_lines(plist, [
        ("# shared by a partner", False),
        (f"pdq {a.hex()} {qa} case 17 photo", False),
        (b.hex(), False),
        (f"pdq {c.hex()}", False),
        ("pdq 12345", True),
        (f"pdq {d.hex()} 140", True),
        (f"pdq {d.hex()[:-1]}g 90", True),
    ])
    table = tmp_path / "partner.csv"
    bad_csv = write_lines(table, [
        ("hash,quality,label,ts", False),
        (f"{d.hex()},{qd},\"clip, 2024\",12.5", False),
        (f"{d.hex()},high,clip 2024", True),
        (f"{a.hex()},{qa}", True),
    ])
    index = tmp_path / "index"
    first = import_hashes.run(["--hashes", str(plist), "--index", str(index),
                            "--label", "partner list 7"])
    second = import_hashes.run(["--hashes", str(table), "--index", str(index)])
    vpdq = tmp_path / "clip.txt"
    bad_vpdq = write_lines(vpdq, [
        (hash_formats.vpdq_line(0, qa, a, 0.0), False),
        (f"1,{b.hex()},{qb},0.040", False),  # vPDQ's Python README order
        ("2,100,0.080", True),
    ])
    third = import_hashes.run(["--hashes", str(vpdq), "--index", str(index)])

    manifest = load_manifest(str(index))
    assert [p.batch_id for p in manifest.partitions] == [
        first.batch_id, second.batch_id, third.batch_id]
    assert (first.videos, first.rows, first.dead_letters) == (2, 3, len(bad_pdq))
    assert (second.videos, second.rows, second.dead_letters) == (1, 1, len(bad_csv))
    assert (third.videos, third.rows, third.dead_letters) == (1, 2, len(bad_vpdq))
    assert dead_letters(index) == (
        {(str(plist), "import", f"line {n}") for n in bad_pdq}
        | {(str(table), "import", f"line {n}") for n in bad_csv}
        | {(str(vpdq), "import", f"line {n}") for n in bad_vpdq})

    rows, frames = index_pdq_rows(index)
    assert rows == {
        ("case 17 photo", a.hex(), qa, 0.0), ("partner list 7", b.hex(), None, 0.0),
        ("partner list 7", c.hex(), None, 0.0), ("clip, 2024", d.hex(), qd, 12.5),
        (str(vpdq), a.hex(), qa, 0.0), (str(vpdq), b.hex(), qb, 0.04)}
    assert frames.column("key").null_count == frames.num_rows
    videos = live_videos(str(index), manifest)
    assert set(videos.column("codec").to_pylist()) == {"import:pdq", "import:csv",
                                                       "import:vpdq"}


# --- exporting the index, and back --------------------------------------------------------

@pytest.mark.parametrize("fmt", ["vpdq", "pdq", "csv"])
def test_export_then_import_gives_the_same_pdq(index_dir: Path, tmp_path: Path,
                                               fmt: str) -> None:
    written = export_hashes.run(["--index", str(index_dir), "--out", str(tmp_path / "out"),
                              "--format", fmt])
    assert written
    imported = tmp_path / "imported"
    import_hashes.run(["--hashes", str(tmp_path / "out"), "--index", str(imported)])
    original, _ = index_pdq_rows(index_dir)
    back, _ = index_pdq_rows(imported)
    if fmt == "pdq":  # PDQ lines carry no timestamp
        original = {r[:3] for r in original}
        back = {r[:3] for r in back}
    if fmt == "vpdq":  # vpdq's timestamps (frame number / rate), to the millisecond
        assert len(back) == len(original)
        # a still shot repeats one hash every MAX_ROW_S: pair rows in time order per hash
        times: dict[tuple, list[float]] = {}
        for row in sorted(original):
            times.setdefault(row[:3], []).append(row[3])
        for row in sorted(back):
            assert abs(times[row[:3]].pop(0) - row[3]) <= 0.0011, row
        original, back = {r[:3] for r in original}, {r[:3] for r in back}
    assert back == original
    assert dead_letters(imported) == set()


def test_pdq_search_answers_the_same_from_an_exported_and_imported_index(
        index_dir: Path, archive: list[Path], tmp_path: Path) -> None:
    """Screengrabs of the footage searched by PDQ: the partner's copy (built from our vPDQ
    export, no footage) finds the same videos and times as our own index."""
    export_hashes.run(["--index", str(index_dir), "--out", str(tmp_path / "vpdq")])
    imported = tmp_path / "imported"
    import_hashes.run(["--hashes", str(tmp_path / "vpdq"), "--index", str(imported)])
    grabs = []
    for video in archive:
        shots = [s for s in load_truth(video)["shots"] if not s["degenerate"]]
        for shot in shots[:2]:
            grabs.append((video, shot))
    hashed = [pdq.reference(np.asarray(grab_frame(v, (s["t_start"] + s["t_end"]) / 2)))
              for v, s in grabs]
    usable = np.array([quality >= PDQ_MIN_QUALITY for _, quality in hashed])
    grabs = [g for g, ok in zip(grabs, usable, strict=True) if ok]
    queries = np.stack([code for code, _ in hashed])[usable]
    assert len(grabs) >= 6

    answers = []
    for index, keyless in ((index_dir, False), (imported, True)):
        _, frames = index_pdq_rows(index)
        q, rows, dist = search_pdq(frames, queries, keyless_only=keyless)
        uri, ts = frames.column("uri").to_pylist(), frames.column("ts_start").to_pylist()
        answers.append({(int(i), uri[r], round(ts[r], 3), int(d))
                        for i, r, d in zip(q, rows, dist, strict=True)})
        for i, (video, shot) in enumerate(grabs):  # each grab finds a row of its own shot
            assert any(j == i and uri[r] == str(video)
                       and shot["t_start"] - 0.05 <= ts[r] < shot["t_end"]
                       for j, r in zip(q, rows, strict=True)), (video.name, shot)
    assert answers[0] == answers[1]


def test_search_pdq_is_exact_and_applies_the_quality_rule(index_dir: Path) -> None:
    _, frames = index_pdq_rows(index_dir)
    rng = np.random.default_rng(7)
    rows = PdqRows(frames)
    pdq = frames.column("pdq").to_pylist()
    quality = frames.column("quality").to_pylist()
    eligible = np.array([p is not None and not f and q >= PDQ_MIN_QUALITY for p, f, q in
                         zip(pdq, frames.column("flat").to_pylist(), quality, strict=True)])
    assert (np.flatnonzero(eligible) == rows.rows).all()
    codes = np.stack([np.frombuffer(pdq[i], np.uint8) for i in rows.rows])
    picks = codes[rng.choice(len(codes), 40)]
    queries = flip_bits(picks, rng.integers(0, 40, len(picks)), rng)
    for radius in (0, 12, 31):
        got = search_pdq(frames, queries, radius)
        q, r, d = brute_force(codes, queries, radius)
        assert [a.tolist() for a in got] == [q.tolist(), rows.rows[r].tolist(), d.tolist()]
    assert all(quality[r] >= PDQ_MIN_QUALITY for r in got[1])
    assert len(search_pdq(frames, queries, keyless_only=True)[0]) == 0  # footage has keys


def test_match_job_searches_an_imported_list_by_pdq(
        index_dir: Path, archive: list[Path], tmp_path: Path) -> None:
    """A partner's index built only from our vPDQ export (no footage, no search key): the
    batch match job finds a screengrab's source through the PDQ path, named by the list."""
    export_hashes.run(["--index", str(index_dir), "--out", str(tmp_path / "vpdq")])
    imported = tmp_path / "imported"
    import_hashes.run(["--hashes", str(tmp_path / "vpdq"), "--index", str(imported)])
    video = archive[0]
    shot = next(s for s in load_truth(video)["shots"] if s["kind"] == "still")
    ts = (shot["t_start"] + shot["t_end"]) / 2
    images = tmp_path / "images"
    images.mkdir()
    grab_frame(video, ts).save(images / "grab.jpg", quality=90)
    out = tmp_path / "out"
    match.run(["--index", str(imported), "--images", str(images), "--out", str(out),
               "--runner=FnApiRunner"])
    rows = ds.dataset(out / "matches", format="parquet", partitioning="hive").to_table()
    best = [r for r in rows.to_pylist() if r["rank"] == 1]
    assert len(best) == 1 and best[0]["hasher"] == "pdq"
    assert best[0]["ref_uri"] == str(video)
    assert shot["t_start"] - 0.05 <= best[0]["ref_ts_s"] < shot["t_end"]
