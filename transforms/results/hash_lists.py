"""Received PDQ/vPDQ hash lists as index rows, and index rows as lists for partners.

An imported list becomes ordinary index rows (``VideoRecord`` + ``FrameRecord``), so the
index's readers, manifest and tooling treat it like footage. What it lacks is the search
key: a partner sends PDQ, the index searches a 256-bit pHash (``key``), and one cannot be
computed from the other. Imported rows therefore carry ``key = None`` and their PDQ, and
are found by ``transforms.search.pdq_rows`` (Meta's defaults: distance <= 31, quality >= 50
on both sides) rather than by the key search.

Imported items are not media files: ``size``, ``width``, ``height`` and
``n_frames_decoded`` are 0, ``codec`` is ``import:<format>`` and ``generation`` is the
hash of the item's lines, so re-importing a changed list supersedes the item by URI.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.records import FrameRecord, VideoRecord
from transforms.hashing.vpdq import VPDQ_QUERY_SHARE, VideoHashes, VpdqMatch, match
from transforms.index.changes import video_id_for
from transforms.results import hash_formats
from transforms.results.hash_formats import HashLine

IMPORT_CODEC = "import"
VIDEOS_LIST = "videos.csv"  # export's map from vPDQ file names to URIs and metadata
META_FIELDS = ("title", "source_url", "published", "rights")


def group_by_label(lines: Iterable[tuple[int, HashLine]], source_uri: str,
                   default_label: str | None) -> dict[str, list[HashLine]]:
    """Hashes grouped into items by label: the line's own, else ``default_label``, else one
    item per line named ``<source_uri>#L<line>`` (so a match still names the line)."""
    items: dict[str, list[HashLine]] = {}
    for number, line in lines:
        label = line.label or default_label or f"{source_uri}#L{number}"
        items.setdefault(label, []).append(line._replace(label=label))
    return items


def item_records(uri: str, hashes: list[HashLine], fmt: str, batch_id: str,
                 meta: dict[str, str | None]) -> tuple[VideoRecord, list[FrameRecord]]:
    """One imported item (an image, a video's vPDQ, a labelled group) as index records.

    The video id comes from the URI and the item's content, as for footage, so the same
    item imported twice keeps its id and a changed one gets a new id.
    """
    hashes = sorted(hashes, key=lambda h: h.ts)
    content = "\n".join(f"{h.pdq.hex()},{h.quality},{h.ts!r}" for h in hashes)
    sha256 = hashlib.sha256(content.encode()).hexdigest()
    video_id = video_id_for(uri, sha256)
    video = VideoRecord(
        video_id=video_id, uri=uri, sha256=sha256, size=0,
        generation=f"{IMPORT_CODEC}:{sha256}", start_time=hashes[0].ts,
        duration=hashes[-1].ts - hashes[0].ts, width=0, height=0,
        codec=f"{IMPORT_CODEC}:{fmt}", n_frames_decoded=0, n_rows=len(hashes),
        batch_id=batch_id, deleted=False, **{f: meta.get(f) for f in META_FIELDS})
    frames = [FrameRecord(video_id=video_id, ts_start=h.ts, ts_end=h.ts, region=0, key=None,
                          flat=False, pdq=h.pdq, quality=h.quality) for h in hashes]
    return video, frames


def whole_frame_hashes(videos: pa.Table, frames: pa.Table) -> dict[int, list[HashLine]]:
    """Per live video, its whole-frame PDQ rows in time order, labelled with its URI."""
    rows = frames.filter(pc.and_(pc.equal(frames.column("region"), 0),
                                 pc.is_valid(frames.column("pdq"))))
    rows = rows.sort_by([("video_id", "ascending"), ("ts_start", "ascending")])
    uris = dict(zip(videos.column("video_id").to_pylist(), videos.column("uri").to_pylist(),
                    strict=True))
    out: dict[int, list[HashLine]] = {}
    for vid, pdq, quality, ts in zip(*(rows.column(c).to_pylist() for c in
                                       ("video_id", "pdq", "quality", "ts_start")), strict=True):
        out.setdefault(vid, []).append(HashLine(pdq, quality, uris[vid], ts))
    return out


def vpdq_file_name(video_id: int, uri: str) -> str:
    """``<video id in hex>-<basename>.txt``: unique per video, readable by a person."""
    return f"{video_id:016x}-{posixpath.basename(uri.rstrip('/')) or 'video'}.txt"


def vpdq_lines(hashes: list[HashLine], video: dict) -> Iterator[str]:
    """A video's whole-frame rows as vPDQ lines, Meta's frame numbers and timestamps."""
    rate = video.get("frame_rate")
    for ordinal, h in enumerate(hashes):
        if rate:
            number = hash_formats.vpdq_frame_number(h.ts, video["start_time"], rate)
            ts = hash_formats.vpdq_timestamp(number, rate)
        else:
            number, ts = ordinal, h.ts
        yield hash_formats.vpdq_line(number, h.quality, h.pdq, ts)


def export_files(videos: pa.Table, frames: pa.Table, fmt: str) -> tuple[dict[str, str], int]:
    """{file name: text} of an index's whole-frame PDQ in ``fmt``, and rows left out.

    ``vpdq`` writes one file per video, numbered and timestamped as Meta's ``vpdq`` does
    (frame number from the row's time, the video's start and frame rate; timestamp
    ``frame_number / frame rate``; rows of a video without a known frame rate, such as an
    imported list, are numbered by their ordinal and keep their time), plus ``videos.csv``
    naming each file's URI and metadata; rows without a quality (imported from bare hex
    lists) cannot be vPDQ and are left out.
    ``pdq`` writes ``hashes.txt``, ``csv`` writes ``hashes.csv`` (with timestamps).
    """
    per_video = whole_frame_hashes(videos, frames)
    if fmt == "pdq":
        lines = [hash_formats.pdq_line(h.pdq, h.quality, h.label)
                 for hashes in per_video.values() for h in hashes]
        return {"hashes.txt": "".join(f"{line}\n" for line in lines)}, 0
    if fmt == "csv":
        rows = [h for hashes in per_video.values() for h in hashes]
        return {"hashes.csv": hash_formats.csv_text(rows)}, 0
    if fmt != "vpdq":
        raise ValueError(f"unknown export format {fmt!r}")
    by_id = {row["video_id"]: row for row in videos.to_pylist()}
    files, skipped = {}, 0
    listing = [("uri", "file", "video_id", *META_FIELDS)]
    for vid, hashes in per_video.items():
        known = [h for h in hashes if h.quality is not None]
        skipped += len(hashes) - len(known)
        if not known:
            continue
        name = vpdq_file_name(vid, by_id[vid]["uri"])
        files[name] = "".join(f"{line}\n" for line in vpdq_lines(known, by_id[vid]))
        listing.append((by_id[vid]["uri"], name, vid, *(by_id[vid][f] for f in META_FIELDS)))
    files[VIDEOS_LIST] = hash_formats.csv_table(listing)
    return files, skipped


def _as_video_hashes(lines: list[HashLine]) -> VideoHashes:
    known = [h for h in lines if h.quality is not None]
    codes = np.stack([np.frombuffer(h.pdq, np.uint8) for h in known]) if known else \
        np.zeros((0, 32), np.uint8)
    return VideoHashes(codes, np.array([h.quality for h in known], dtype=np.int64),
                       np.array([h.ts for h in known], dtype=np.float64))


def match_imported(videos: pa.Table, frames: pa.Table, item_uris: Iterable[str],
                   min_share: float = VPDQ_QUERY_SHARE) -> list[tuple[str, str, VpdqMatch]]:
    """(item URI, footage URI, verdict) for every imported item whose hashes match an
    indexed video under vPDQ's rule (query share >= ``min_share``), best first.

    Each item is compared with every live footage video, all frames against all frames
    (vPDQ's brute-force rule, as a partner's tooling applies it): meant for the lists a
    partner sends about a case, not for matching one archive against another.
    """
    per_video = whole_frame_hashes(videos, frames)
    rows = videos.to_pylist()
    ids = {row["uri"]: row["video_id"] for row in rows}
    imported = {row["video_id"] for row in rows
                if (row["codec"] or "").startswith(f"{IMPORT_CODEC}:")}
    footage = {vid: hashes for vid, hashes in per_video.items() if vid not in imported}
    found = []
    for item in item_uris:
        query = _as_video_hashes(per_video.get(ids[item], []))
        for hashes in footage.values():
            verdict = match(query, _as_video_hashes(hashes))
            if verdict.query_share >= min_share:
                found.append((item, hashes[0].label, verdict))
    return sorted(found, key=lambda f: (f[0], -f[2].query_share, f[1]))

