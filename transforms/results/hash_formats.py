"""The text formats hashes are exchanged in: PDQ lines, vPDQ frame lines and a plain CSV.

Trust-and-safety teams exchange PDQ (images) and vPDQ (videos) hashes in the formats of
Meta's ThreatExchange tools, so that is what framematch reads and writes:

- **PDQ lines** (python-threatexchange's ``threatexchange hash photo``): ``pdq <hex>``.
  framematch writes ``pdq <hex> <quality> <label>`` -- the first two fields are exactly
  ThreatExchange's line -- and reads ``pdq <hex>`` or a bare ``<hex>``, each optionally
  followed by a quality and a label (the rest of the line).
- **vPDQ** (one file per video): ``frame_number,quality,hash,timestamp``, the order of the
  C++ reference writer (``vpdq/cpp/vpdq/cpp/io/vpdqio.cpp``, timestamp in seconds with 3
  decimals), which framematch writes. Frames are numbered as vPDQ numbers them, from 0 in
  decoding order, and the timestamp is ``frame_number / frame rate`` in single precision
  (``vpdq_timestamp``), not the frame's presentation time: a video starting at 3.5 s still
  has its first frame at 0.000. vPDQ's Python README prints
  ``frame,hash,quality,ts`` instead, so the reader finds the 64-hex column rather than
  trusting the order.
- **CSV** ``hash,quality,label[,ts]``, optionally with that header row.

Hashes are 256-bit PDQ in Meta's hex (``Hash256::format()``), which is also how the index
stores them (``transforms.hashing.hashes``), so no bit is reordered on the way in or out.
Blank lines and lines starting with ``#`` are skipped by every reader.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

FORMATS = ("pdq", "vpdq", "csv")
CSV_HEADER = ("hash", "quality", "label", "ts")
VPDQ_TS_DECIMALS = 3  # the C++ writer's TIMESTAMP_OUTPUT_PRECISION

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class HashLine(NamedTuple):
    """One PDQ hash read from a list, with what the line said about it."""

    pdq: bytes  # 32 bytes, Meta's hex order
    quality: int | None  # 0..100, None when the line does not say
    label: str | None  # what the hash stands for (a URI, a case id); None when unlabelled
    ts: float  # seconds into the video; 0.0 for an image


class LineError(ValueError):
    """A line that is not a hash in the expected format; the message says what is wrong."""


def pdq_line(pdq: bytes, quality: int | None, label: str | None) -> str:
    """``pdq <hex> <quality> <label>``: ThreatExchange's ``pdq <hex>`` plus what we know."""
    fields = ["pdq", pdq.hex()]
    if quality is not None:
        fields.append(str(quality))
        if label:
            fields.append(label)
    return " ".join(fields)


def vpdq_line(frame: int, quality: int, pdq: bytes, ts: float) -> str:
    """One frame of a vPDQ file in the C++ writer's order: frame, quality, hash, timestamp."""
    return f"{frame},{quality},{pdq.hex()},{ts:.{VPDQ_TS_DECIMALS}f}"


def vpdq_frame_number(ts: float, start_time: float, frame_rate: float) -> int:
    """The vPDQ frame number of a frame at presentation time ``ts`` of a constant-rate video:
    frames decoded before it, counted from the stream's start."""
    return max(0, round((ts - start_time) * frame_rate))


def vpdq_timestamp(frame_number: int, frame_rate: float) -> float:
    """vPDQ's timestamp: ``(float) frame_number / (float) frame_rate``, single precision as
    Meta's ``hashFrame`` computes it (0.0 without a frame rate)."""
    if not frame_rate:
        return 0.0
    return float(np.float32(frame_number) / np.float32(frame_rate))


def csv_table(rows: Iterable[Sequence[object]]) -> str:
    """Rows as CSV text (``None`` as an empty field), with the csv module's quoting."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def csv_text(hashes: Iterable[HashLine]) -> str:
    """A CSV with the ``hash,quality,label,ts`` header, one row per hash."""
    return csv_table([CSV_HEADER, *((h.pdq.hex(), h.quality, h.label, repr(h.ts))
                                    for h in hashes)])


def parse_hex(token: str) -> bytes:
    if not _HEX64.fullmatch(token):
        raise LineError(f"not a 64-digit hex PDQ hash: {token[:80]!r}")
    return bytes.fromhex(token)


def _quality(token: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise LineError(f"quality is not an integer: {token[:40]!r}") from None
    if not 0 <= value <= 100:
        raise LineError(f"quality {value} is outside 0..100")
    return value


def _ts(token: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise LineError(f"timestamp is not a number: {token[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise LineError(f"timestamp is not finite: {token!r}")
    return value


def _parse_pdq(line: str) -> HashLine:
    fields = line.split(None, 3)
    fields = fields[1:] if fields[0].lower() == "pdq" else line.split(None, 2)
    if not fields:
        raise LineError("'pdq' with no hash")
    quality = _quality(fields[1]) if len(fields) > 1 else None
    return HashLine(parse_hex(fields[0]), quality, fields[2] if len(fields) > 2 else None, 0.0)


def _parse_vpdq(line: str) -> HashLine:
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != 4:
        raise LineError(f"a vPDQ line has 4 comma-separated fields, this one {len(fields)}")
    at = [i for i in (1, 2) if _HEX64.fullmatch(fields[i])]
    if len(at) != 1:
        raise LineError("no 64-digit hex hash in field 2 or 3 of a vPDQ line")
    quality_at = 3 - at[0]
    try:
        int(fields[0])
    except ValueError:
        raise LineError(f"frame number is not an integer: {fields[0][:40]!r}") from None
    return HashLine(parse_hex(fields[at[0]]), _quality(fields[quality_at]), None, _ts(fields[3]))


def _parse_csv(fields: list[str]) -> HashLine:
    if len(fields) not in (3, 4):
        raise LineError(f"a CSV row has hash,quality,label[,ts]: got {len(fields)} fields")
    quality = _quality(fields[1].strip()) if fields[1].strip() else None
    ts = _ts(fields[3].strip()) if len(fields) == 4 and fields[3].strip() else 0.0
    return HashLine(parse_hex(fields[0].strip()), quality, fields[2].strip() or None, ts)


def detect_format(text: str, name: str = "") -> str:
    """The format of a hash file from its name (``.csv``) or its first data line."""
    if name.lower().endswith(".csv"):
        return "csv"
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        token = line.split()[0]
        if token.lower() == "pdq" or _HEX64.fullmatch(token):
            return "pdq"
        return "vpdq" if line.split(",")[0].strip().isdigit() else "csv"
    return "pdq"


def parse(text: str, fmt: str) -> Iterator[tuple[int, HashLine | LineError]]:
    """(1-based line number, hash or the error that line raised) for every data line.

    Errors are yielded rather than raised, so one bad line costs one dead letter, not the
    list. A CSV header row (``hash,...``) on the first data line is skipped.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown hash format {fmt!r}; known: {', '.join(FORMATS)}")
    first = True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = next(csv.reader([line])) if fmt == "csv" else []
        if first and fmt == "csv" and fields[0].strip().lower() == "hash":
            first = False
            continue
        first = False
        try:
            if fmt == "pdq":
                yield number, _parse_pdq(line)
            elif fmt == "vpdq":
                yield number, _parse_vpdq(line)
            else:
                yield number, _parse_csv(fields)
        except LineError as error:
            yield number, error
