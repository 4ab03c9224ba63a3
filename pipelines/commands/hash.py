"""``framematch hash``: the hashes the index would store, for files, in exchange formats.

    framematch hash FILE_OR_URI... [--format text|json|parquet] [--out FILE]

An image becomes one line ``pdq <hex> <quality> <uri>`` (ThreatExchange's ``pdq <hex>``,
then the quality and the file); a video becomes one vPDQ line per frame the index keeps,
``frame_number,quality,hash,timestamp`` in the order of vPDQ's C++ writer (with several
inputs, each video's lines follow a ``# <uri>`` line). ``json`` (one object per row, hashes
in hex) and ``parquet`` (the frames schema plus ``uri``) give every stored hash of each
row. The hashes come from the index's own code path: images through ``load_image`` ->
``thumbnail`` -> ``hash_batch``; videos decoded, hashed and pruned by the index job's
``frame_table`` in its segments, so a video's rows equal its whole-frame index rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.index import STORED_HASHERS, IndexOptions
from pipelines.options import CommandParser
from schemas.records import FRAMES_SCHEMA, FrameRecord
from transforms.hashing import hashes
from transforms.hashing.regions import WHOLE_FRAME
from transforms.index.changes import VIDEO_EXTENSIONS, video_id_for
from transforms.index.segments import frame_table
from transforms.io import storage
from transforms.media import decode, preprocess
from transforms.media.images import ImageError, load_image, read_bytes
from transforms.results import hash_formats

HASH_SCHEMA = FRAMES_SCHEMA.append(pa.field("uri", pa.string()))
IMAGE_HASHERS = ("pdq", "phash", "dhash", "phash256")


@dataclass(frozen=True)
class Hashed:
    """One input's rows: a video's whole-frame rows, or an image's one row."""

    uri: str
    is_video: bool
    rows: list[FrameRecord]
    frame_numbers: list[int]  # decoded frame number of each row (0 for an image)


def hash_image(uri: str, data: bytes) -> Hashed:
    """An image's one row: key, pHash, dHash, PDQ and quality of its canonical thumbnail."""
    thumb = preprocess.thumbnail(load_image(data))[np.newaxis]
    codes = hashes.hash_batch(thumb, IMAGE_HASHERS)
    row = FrameRecord(
        video_id=video_id_for(uri, hashlib.sha256(data).hexdigest()), ts_start=0.0,
        ts_end=0.0, region=0, key=codes["phash256"][0].tobytes(),
        flat=bool(preprocess.is_flat(thumb)[0]),
        phash=int(hashes.to_uint64(codes["phash"])[0]),
        dhash=int(hashes.to_uint64(codes["dhash"])[0]),
        pdq=codes["pdq"][0].tobytes(), quality=int(codes["quality"][0]))
    return Hashed(uri, False, [row], [0])


def hash_video(uri: str, prune_d: int, segment_s: float, timeout_s: float) -> Hashed:
    """A video's whole-frame rows, decoded and pruned per segment exactly as the index does.

    Frame numbers count every decoded frame from the first, as vPDQ's do.
    """
    sha256, _ = storage.sha256_of(uri)
    video_id = video_id_for(uri, sha256)
    rows: list[FrameRecord] = []
    numbers: list[int] = []
    decoded = 0
    with storage.local_path(uri) as path:
        info = decode.probe(path, timeout_s=timeout_s)
        for start, end in decode.plan_segments(info, segment_s):
            pts_parts, thumb_parts = [], []
            for pts, rgb in decode.decode_frames(path, start, end, timeout_s=timeout_s):
                pts_parts.append(pts)
                thumb_parts.append(preprocess.grey(rgb))
            if pts_parts:
                table, keep = frame_table(video_id, np.concatenate(pts_parts),
                                          np.concatenate(thumb_parts), STORED_HASHERS, prune_d)
                whole = table.filter(pc.equal(table.column("region"), WHOLE_FRAME))
                rows += [FrameRecord(**row) for row in whole.to_pylist()]
                numbers += (decoded + keep).tolist()
                decoded += sum(len(p) for p in pts_parts)
    if not rows:
        raise decode.DecodeError("decode", f"{uri}: no video frames decoded")
    return Hashed(uri, True, rows, numbers)


def text_lines(item: Hashed, several: bool) -> Iterator[str]:
    if not item.is_video:
        (row,) = item.rows
        yield hash_formats.pdq_line(row.pdq, row.quality, item.uri)
        return
    if several:
        yield f"# {item.uri}"
    for number, row in zip(item.frame_numbers, item.rows, strict=True):
        yield hash_formats.vpdq_line(number, row.quality, row.pdq, row.ts_start)


def json_object(uri: str, row: FrameRecord) -> dict:
    """A row with its hashes as hex strings (uint64 does not survive JSON readers)."""
    out = {"uri": uri, **row._asdict()}
    for name in ("key", "pdq"):
        out[name] = out[name].hex() if out[name] is not None else None
    for name in ("phash", "dhash"):
        out[name] = f"{out[name]:016x}" if out[name] is not None else None
    return out


def _write(out: str | None, data: bytes) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    with FileSystems.create(out, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def _parser() -> argparse.ArgumentParser:
    defaults = PipelineOptions([]).view_as(IndexOptions)  # the index job's own defaults
    parser = CommandParser(prog="framematch hash", description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="FILE_OR_URI")
    parser.add_argument("--format", choices=("text", "json", "parquet"), default="text")
    parser.add_argument("--out", default=None, help="Output file (default: stdout).")
    parser.add_argument("--prune_d", type=int, default=defaults.prune_d,
                        help="Keep a video frame when its key moved more than this many bits.")
    parser.add_argument("--segment_seconds", type=float, default=defaults.segment_seconds,
                        help="Decode and prune videos in segments of this length, as the "
                             "index does.")
    parser.add_argument("--decode_timeout", type=float, default=defaults.decode_timeout)
    return parser


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.format == "parquet" and not args.out:
        raise SystemExit("framematch hash: --format parquet needs --out FILE")
    hashed: list[Hashed] = []
    failures = 0
    for uri in args.inputs:
        try:
            if os.path.splitext(uri)[1].lower() in VIDEO_EXTENSIONS:
                hashed.append(hash_video(uri, args.prune_d, args.segment_seconds,
                                         args.decode_timeout))
            else:
                hashed.append(hash_image(uri, read_bytes(uri)))
        except (ImageError, decode.DecodeError, OSError) as error:
            failures += 1
            print(f"framematch hash: {uri}: {error}", file=sys.stderr)
    if args.format == "text":
        several = len(args.inputs) > 1
        lines = [line for item in hashed for line in text_lines(item, several)]
        _write(args.out, "".join(f"{line}\n" for line in lines).encode())
    elif args.format == "json":
        objects = [json_object(item.uri, row) for item in hashed for row in item.rows]
        _write(args.out, "".join(f"{json.dumps(o)}\n" for o in objects).encode())
    else:
        table = pa.Table.from_pylist(
            [{**row._asdict(), "uri": item.uri} for item in hashed for row in item.rows],
            schema=HASH_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _write(args.out, sink.getvalue().to_pybytes())
    return 1 if failures else 0
