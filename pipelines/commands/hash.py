"""``framematch hash``: PDQ and vPDQ of files exactly as Meta's reference computes them.

    framematch hash FILE_OR_URI... [--format text|json|parquet] [--out FILE]
                    [--seconds_per_hash S]

An image becomes one line ``pdq <hex> <quality> <uri>`` (ThreatExchange's ``pdq <hex>``,
then the quality and the file): Meta's C++ PDQ (through ``pdqhash``) of the whole image as
Pillow decodes it, bit for bit what ThreatExchange's tools compute. A video becomes one vPDQ
line per frame, ``frame_number,quality,hash,timestamp`` as Meta's ``vpdq`` writes them: the
same C++ on every decoded frame at its full size in RGB (swscale's ``area`` conversion, as
``vpdq`` does it), frames numbered from 0 in decoding order and timestamped
``frame_number / frame rate``; ``--seconds_per_hash`` keeps every ``int(S * fps)``-th frame,
as ``vpdq -r S`` does (0, the default, hashes every frame). With several inputs, each
video's lines follow a ``# <uri>`` line.

``json`` (one object per row, hashes in hex) and ``parquet`` (``HASH_SCHEMA``) carry the
same rows; an image's row also has the search key, pHash and dHash of its canonical
thumbnail, which is what the index would search it by.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.index import IndexOptions
from pipelines.options import CommandParser
from transforms.hashing import hashes, pdq
from transforms.index.changes import VIDEO_EXTENSIONS, video_id_for
from transforms.io import storage
from transforms.media import decode, preprocess
from transforms.media.images import ImageError, load_image, read_bytes
from transforms.results import hash_formats

THUMB_HASHERS = ("phash", "dhash", "phash256")


class HashRow(NamedTuple):
    """One hashed picture: an image, or one frame of a video (``frame_number`` set)."""

    uri: str
    video_id: int
    frame_number: int | None  # vPDQ's: decoded frames counted from 0 (None for an image)
    ts: float  # vPDQ's timestamp, frame_number / frame rate (0.0 for an image)
    pdq: bytes  # Meta's hex order
    quality: int
    key: bytes | None = None  # the search key of the canonical thumbnail (images)
    phash: int | None = None
    dhash: int | None = None


HASH_SCHEMA = pa.schema([
    ("uri", pa.string()), ("video_id", pa.int64()), ("frame_number", pa.int64()),
    ("ts", pa.float64()), ("pdq", pa.binary(32)), ("quality", pa.int8()),
    ("key", pa.binary(32)), ("phash", pa.uint64()), ("dhash", pa.uint64()),
])


def hash_image(uri: str, data: bytes) -> HashRow:
    """Meta's PDQ of the whole image, and the index's hashes of its canonical thumbnail."""
    image = load_image(data)
    code, quality = pdq.reference(np.asarray(image))
    thumb = preprocess.thumbnail(image)[np.newaxis]
    codes = hashes.hash_batch(thumb, THUMB_HASHERS)
    return HashRow(uri, video_id_for(uri, hashlib.sha256(data).hexdigest()), None, 0.0,
                   code.tobytes(), quality, codes["phash256"][0].tobytes(),
                   int(hashes.to_uint64(codes["phash"])[0]),
                   int(hashes.to_uint64(codes["dhash"])[0]))


def frame_interval(seconds_per_hash: float, frame_rate: float) -> int:
    """vPDQ's ``frameMod``: hash frames whose number is a multiple of ``int(S * fps)``, at
    least 1 (every frame for S = 0)."""
    return max(1, int(seconds_per_hash * frame_rate))


def hash_video(uri: str, seconds_per_hash: float = 0.0, timeout_s: float = 600,
               segment_s: float = 60.0) -> list[HashRow]:
    """vPDQ of a video as Meta's ``vpdq`` computes it: one row per hashed frame.

    The whole video is decoded in one pass (frame numbers count every decoded frame, so
    no seek may skip one), with the index's time budget for all of its segments.
    """
    sha256, _ = storage.sha256_of(uri)
    video_id = video_id_for(uri, sha256)
    rows: list[HashRow] = []
    number = 0
    with storage.local_path(uri) as path:
        info = decode.probe(path, timeout_s=timeout_s)
        if not info.frame_rate:
            raise decode.DecodeError("probe", f"{uri}: no frame rate to number frames by")
        every = frame_interval(seconds_per_hash, info.frame_rate)
        budget = timeout_s * len(decode.plan_segments(info, segment_s))
        for _, frames in decode.decode_rgb(path, size=(info.width, info.height),
                                           timeout_s=budget):
            for frame in frames:
                if number % every == 0:
                    code, quality = pdq.reference(frame)
                    rows.append(HashRow(uri, video_id, number,
                                        hash_formats.vpdq_timestamp(number, info.frame_rate),
                                        code.tobytes(), quality))
                number += 1
    if not rows:
        raise decode.DecodeError("decode", f"{uri}: no video frames decoded")
    return rows


def text_lines(rows: list[HashRow], several: bool) -> Iterator[str]:
    """An image's PDQ line, or a video's vPDQ lines (after ``# <uri>`` when ``several``)."""
    if rows[0].frame_number is None:
        (row,) = rows
        yield hash_formats.pdq_line(row.pdq, row.quality, row.uri)
        return
    if several:
        yield f"# {rows[0].uri}"
    for row in rows:
        yield hash_formats.vpdq_line(row.frame_number, row.quality, row.pdq, row.ts)


def json_object(row: HashRow) -> dict:
    """A row with its hashes as hex strings (uint64 does not survive JSON readers)."""
    out = row._asdict()
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
    parser.add_argument("--seconds_per_hash", type=float, default=0.0,
                        help="Hash one video frame every this many seconds, as vpdq -r does "
                             "(0: every frame).")
    parser.add_argument("--decode_timeout", type=float, default=defaults.decode_timeout,
                        help="Seconds per --segment_seconds of video the decode may take.")
    parser.add_argument("--segment_seconds", type=float, default=defaults.segment_seconds,
                        help=argparse.SUPPRESS)
    return parser


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.format == "parquet" and not args.out:
        raise SystemExit("framematch hash: --format parquet needs --out FILE")
    if args.seconds_per_hash < 0:
        raise SystemExit("framematch hash: --seconds_per_hash must be >= 0")
    hashed: list[list[HashRow]] = []
    failures = 0
    for uri in args.inputs:
        try:
            if os.path.splitext(uri)[1].lower() in VIDEO_EXTENSIONS:
                hashed.append(hash_video(uri, args.seconds_per_hash, args.decode_timeout,
                                         args.segment_seconds))
            else:
                hashed.append([hash_image(uri, read_bytes(uri))])
        except (ImageError, decode.DecodeError, OSError) as error:
            failures += 1
            print(f"framematch hash: {uri}: {error}", file=sys.stderr)
    rows = [row for item in hashed for row in item]
    if args.format == "text":
        several = len(args.inputs) > 1
        lines = [line for item in hashed for line in text_lines(item, several)]
        _write(args.out, "".join(f"{line}\n" for line in lines).encode())
    elif args.format == "json":
        _write(args.out, "".join(f"{json.dumps(json_object(r))}\n" for r in rows).encode())
    else:
        table = pa.Table.from_pylist([r._asdict() for r in rows], schema=HASH_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _write(args.out, sink.getvalue().to_pybytes())
    return 1 if failures else 0
