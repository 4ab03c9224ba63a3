"""Archive videos to canonical RGB thumbnails with the true presentation time of every frame.

FFmpeg runs as a subprocess (command built with ffmpeg-python) and pipes frames out as raw
``rgb24``, already area-scaled to ``THUMB_SIZE`` x ``THUMB_SIZE`` (see transforms.media.preprocess).
A raw pipe carries no timestamps, so each frame's pts comes from FFmpeg itself: a ``showinfo``
filter logs ``pts:`` (an integer in the filter's time base, itself logged at configuration)
on stderr, a thread reads those lines and they are paired, in order, with the frames read
from stdout. Integer pts are used rather than ``pts_time:``, which FFmpeg prints with six
significant digits only (0.1 s resolution past 10 000 s).

Timing is never resampled: ``-fps_mode passthrough`` keeps one output frame per decoded
frame (no CFR duplication or dropping on variable-frame-rate sources) and ``-copyts`` keeps
absolute stream times, so a pts is what ``ffprobe -show_frames`` calls the frame's
``best_effort_timestamp_time``, including a non-zero stream start time.

Archive files are untrusted input. The demuxers are restricted to real containers
(``FORMAT_WHITELIST``) and the input protocol to ``file``: a playlist (HLS) or concat list
disguised as ``.mp4`` would otherwise make FFmpeg open whatever files or URLs it names.
Every FFmpeg and ffprobe process also runs under a wall-clock budget and an address-space
limit (``RLIMIT_AS``, ``max_memory_mb``): a file that claims absurd dimensions or makes a
decoder allocate without end fails that one file instead of taking the worker's memory.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import queue
import re
import resource
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import ffmpeg
import numpy as np

from transforms.media.preprocess import THUMB_SIZE

# Demuxers FFmpeg may pick; a demuxer is allowed when any of its aliases is listed ("mov" lets
# in "mov,mp4,m4a,3gp,3g2,mj2", "matroska" lets in "matroska,webm"). Containers only: no
# playlists (hls, dash), concat lists, image sequences, subtitles or raw elementary streams.
FORMAT_WHITELIST = "mov,matroska,avi,flv,mpegts,mpeg,ogg,asf,mxf"
PROTOCOL_WHITELIST = "file"
_INPUT_GUARD = {"protocol_whitelist": PROTOCOL_WHITELIST, "format_whitelist": FORMAT_WHITELIST}
# Address space per FFmpeg process. FFmpeg with its shared libraries maps ~300-500 MB before
# decoding anything; a 4K H.264 decode stays well under 1 GB.
MAX_MEMORY_MB = 2048

_SHOWINFO = re.compile(r"\[Parsed_showinfo_\d+ @ [^\]]*\] (?:\[\w+\] )?")
_FRAME_PTS = re.compile(r"\bn:\s*\d+ pts:\s*(-?\d+)")
_TIME_BASE = re.compile(r"config in time_base: (\d+)/(\d+)")
_PROBLEM = re.compile(r"\[(warning|error|fatal|panic)\] ")
# FFmpeg's signs of a damaged file: error-level messages, and its warnings about packets or
# frames that the demuxer or decoder flagged as corrupt.
_DAMAGE = re.compile(r"\[(?:error|fatal|panic)\] |: corrupt (?:decoded frame|input packet) ")


class DecodeError(Exception):
    """A video that cannot be (fully) decoded; the index pipeline dead-letters these.

    ``stage`` is 'probe' (not a readable video), 'decode' (FFmpeg failed while decoding) or
    'timeout' (FFmpeg kept us waiting longer than allowed). ``frames`` counts the frames
    yielded before the error, so a caller can tell a damaged tail from an unreadable file.
    """

    def __init__(self, stage: str, message: str, frames: int = 0) -> None:
        super().__init__(stage, message, frames)  # all in args: it pickles across workers
        self.stage = stage
        self.message = message
        self.frames = frames

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file: absolute start time and duration in seconds."""

    start_time: float
    duration: float
    width: int
    height: int
    codec: str


def _url(path: str) -> str:
    """An explicit ``file:`` URL, so that names like ``a:b.mp4`` or ``-x`` stay plain files."""
    return "file:" + os.path.abspath(path)


def _spawn(args: list[str], max_memory_mb: int | None, **popen: object) -> subprocess.Popen:
    """Start FFmpeg or ffprobe with its address space capped at ``max_memory_mb`` (None: no cap).

    The cap (``RLIMIT_AS``) is set on the running child with ``prlimit`` rather than in a
    ``preexec_fn``: a ``preexec_fn`` makes Python fork instead of spawn, and forking a Beam
    worker (gRPC threads) can deadlock or abort the child. The child has just exec'd when
    ``Popen`` returns, long before it allocates a picture; past the cap FFmpeg's allocations
    fail and it exits with "Cannot allocate memory", which callers report as a failure.
    """
    process = subprocess.Popen(args, **popen)
    if max_memory_mb:
        limit = max_memory_mb << 20
        with contextlib.suppress(ProcessLookupError):  # already done: nothing to cap
            resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, limit))
    return process


def _float(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def probe(path: str, timeout_s: float = 30, max_memory_mb: int | None = MAX_MEMORY_MB
          ) -> VideoInfo:
    """Start time, duration, size and codec of the first video stream (cover art excluded)."""
    args = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json"]
    for option, value in _INPUT_GUARD.items():
        args += [f"-{option}", value]
    with _spawn([*args, _url(path)], max_memory_mb, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            stdout, stderr_bytes = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise DecodeError("timeout", f"ffprobe {path} took over {timeout_s} s") from exc
    stderr = stderr_bytes.decode("utf-8", "replace").strip()
    if process.returncode != 0:
        last = stderr.splitlines()[-1] if stderr else f"exit status {process.returncode}"
        raise DecodeError("probe", f"{path}: {last}")
    found = json.loads(stdout or b"{}")
    videos = [
        s
        for s in found.get("streams", [])
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    if not videos:
        raise DecodeError("probe", f"{path}: no video stream")
    stream, container = videos[0], found.get("format", {})
    start = _float(stream.get("start_time"))
    if start is None:
        start = _float(container.get("start_time")) or 0.0
    duration = _float(stream.get("duration"))
    if duration is None:
        duration = _float(container.get("duration")) or 0.0
    return VideoInfo(
        start_time=start,
        duration=duration,
        width=int(stream.get("width", 0)),
        height=int(stream.get("height", 0)),
        codec=str(stream.get("codec_name", "unknown")),
    )


def plan_segments(info: VideoInfo, segment_s: float) -> list[tuple[float, float]]:
    """Absolute ``[start, end)`` pts intervals to decode a video in parallel pieces.

    The first interval starts at -inf and the last ends at +inf, so that no frame is lost to
    a container whose reported start time or duration is slightly off (B-frame delays, a
    last frame longer than the declared duration); inner boundaries are ``segment_s`` apart
    from ``info.start_time``.
    """
    if segment_s <= 0:
        raise ValueError(f"segment_s must be positive, got {segment_s}")
    count = max(1, math.ceil(info.duration / segment_s))
    bounds = [info.start_time + i * segment_s for i in range(1, count)]
    return list(zip([-math.inf, *bounds], [*bounds, math.inf], strict=True))


class _FrameLog(threading.Thread):
    """Drains FFmpeg's stderr: the pts of each frame in order, signs of damage, last lines.

    A segment counts the damage logged between the line of its first frame at or past
    ``start`` and the line of its first frame at or past ``end``, so that every message of
    a file is counted by exactly one segment, whatever the timing:

    - before the first frame at or past ``start`` is not counted: after a seek, frames
      decoded from the keyframe on may legitimately miss references from before it (leading
      pictures of an open GOP, MPEG-TS landing between keyframes). That stretch is counted
      by the previous segment, which decodes up to and including that first frame.
    - after the first frame at or past ``end`` is not counted either: that is the next
      segment's. The decode stops there by killing FFmpeg, which by then may or may not
      have decoded (and complained about) a few packets more, depending on how far ahead
      of the pipe it ran: counting those made a segment's outcome depend on timing.
    """

    def __init__(self, stderr, start: float, end: float = math.inf) -> None:
        super().__init__(daemon=True)
        self._stderr = stderr
        self._start = start
        self._end = end
        self._counting = start == -math.inf
        self.pts: queue.SimpleQueue[float | None] = queue.SimpleQueue()  # None marks the end
        self.problems: collections.deque[str] = collections.deque(maxlen=4)
        self.tail: collections.deque[str] = collections.deque(maxlen=4)
        self.damage = 0

    def run(self) -> None:
        time_base = None
        try:
            for raw in self._stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                tag = _SHOWINFO.search(line)
                if tag is None:
                    if line:
                        self.tail.append(line)
                        if _PROBLEM.search(line):
                            self.problems.append(line)
                        self.damage += self._counting and bool(_DAMAGE.search(line))
                elif (frame := _FRAME_PTS.match(line, tag.end())) and time_base:
                    pts = int(frame.group(1)) * time_base[0] / time_base[1]
                    if pts >= self._end:  # the rest is the next segment's to count
                        self._counting, self._start = False, math.inf
                    self._counting = self._counting or pts >= self._start
                    self.pts.put(pts)
                elif config := _TIME_BASE.match(line, tag.end()):
                    time_base = (int(config.group(1)), int(config.group(2)))
        finally:
            self.pts.put(None)

    def last_lines(self) -> str:
        lines = self.problems or self.tail
        return " | ".join(lines) or "no message from ffmpeg"


class _Watchdog:
    """Kills a process once it has kept us waiting for ``budget_s`` seconds in total.

    Only time spent inside ``with watchdog:`` blocks counts, so a slow consumer of the frames
    (hashing them between batches) never times a healthy decode out.
    """

    def __init__(self, process: subprocess.Popen, budget_s: float) -> None:
        self._process = process
        self._left = budget_s
        self._timer: threading.Timer | None = None
        self._since = 0.0
        self.fired = False

    def _fire(self) -> None:
        self.fired = True
        self._process.kill()

    def __enter__(self) -> _Watchdog:
        self._since = time.monotonic()
        self._timer = threading.Timer(max(self._left, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()
        self._left -= time.monotonic() - self._since


def _command(path: str, start: float, size: int, threads: int,
             reference: tuple[int, int] | None = None) -> list[str]:
    """FFmpeg reading ``path`` from the keyframe before absolute ``start``, showinfo last so
    it logs each frame as it leaves for the pipe (scaling keeps pts and time base).

    With ``reference`` (width, height), each piped frame is the square thumbnail stacked
    above a larger picture of the same frame, both padded to one width: one decode, one
    pipe, one pts per frame for both.
    """
    seek = {} if start == -math.inf else {"ss": repr(float(start)), "seek_timestamp": 1}
    source = ffmpeg.input(_url(path), threads=threads, noaccurate_seek=None, **seek, **_INPUT_GUARD)
    video = source["V:0"]
    if reference is None:
        stacked = video.filter("scale", size, size, flags="area")
    else:
        width = max(size, reference[0])
        split = video.filter_multi_output("split")
        thumb = split[0].filter("scale", size, size, flags="area").filter("pad", width, size)
        big = split[1].filter("scale", reference[0], reference[1], flags="area").filter(
            "pad", width, reference[1])
        stacked = ffmpeg.filter([thumb, big], "vstack", inputs=2)
    # showinfo's per-frame checksums cost ~0.3 ms a frame and are not read: off.
    frames = stacked.filter("format", "rgb24").filter("showinfo", checksum=0)
    # Passthrough: one frame out per frame decoded. The encoder keeps the stream's time base
    # (-1): a coarser one would round close VFR pts together and make the muxer complain.
    output = frames.output("pipe:", format="rawvideo", fps_mode="passthrough", enc_time_base=-1)
    return output.global_args(
        "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
        "-copyts", "-filter_threads", str(threads),
    ).compile()  # fmt: skip


def decode_frames(
    path: str,
    start: float | None = None,
    end: float | None = None,
    *,
    size: int = THUMB_SIZE,
    batch: int = 64,
    timeout_s: float = 600,
    threads: int = 1,
    max_memory_mb: int | None = MAX_MEMORY_MB,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of (absolute pts in seconds float64 (n,), RGB uint8 (n, size, size, 3)).

    Only frames with ``start <= pts < end`` are yielded (``None`` means unbounded), so the
    intervals of ``plan_segments`` partition a video's frames exactly. FFmpeg seeks to the
    keyframe before ``start`` (absolute time, ``-seek_timestamp``) and every frame it decodes
    from there is judged here, by the same pts as an unsegmented decode; decoding stops at
    the first frame at or past ``end``.

    ``timeout_s`` bounds the total time spent waiting on FFmpeg (time the caller spends
    between batches does not count); past it FFmpeg is killed and DecodeError('timeout')
    raised. FFmpeg is always killed and reaped, also when the caller stops iterating early.
    ``max_memory_mb`` caps FFmpeg's address space (None: no limit); past it FFmpeg fails and
    DecodeError('decode') carries its "Cannot allocate memory".

    Damaged files: FFmpeg conceals what it can and usually exits 0 on truncated or corrupted
    data, logging errors as it goes. Every frame it outputs is yielded; then, if it exited
    non-zero or logged damage (an error, a corrupt packet or frame; see ``_FrameLog`` for seek
    pre-roll), DecodeError('decode') is raised after them, with FFmpeg's
    last error lines and ``frames`` saying how many came out. An archive wants both: the
    readable part of a truncated file searchable, and the file reported as damaged; a caller
    that wants all or nothing discards the rows when it catches the error. A whole-file
    decode that yields no frame at all is a DecodeError('decode') too.
    """
    yield from _decode(path, start, end, size, None, batch, timeout_s, threads, max_memory_mb)


def decode_frames_with_reference(
    path: str,
    start: float | None = None,
    end: float | None = None,
    *,
    reference: tuple[int, int],
    size: int = THUMB_SIZE,
    batch: int = 64,
    timeout_s: float = 600,
    threads: int = 1,
    max_memory_mb: int | None = MAX_MEMORY_MB,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``decode_frames`` plus each frame area-scaled to ``reference`` (width, height) RGB, from
    the same decode: batches of (pts, thumbnails (n, size, size, 3), references (n, h, w, 3))."""
    ref_w, ref_h = reference
    for pts, stacked in _decode(path, start, end, size, reference, batch, timeout_s, threads,
                                max_memory_mb):
        yield pts, stacked[:, :size, :size], stacked[:, size:, :ref_w]


def _decode(path: str, start: float | None, end: float | None, size: int,
            reference: tuple[int, int] | None, batch: int, timeout_s: float, threads: int,
            max_memory_mb: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The decode behind both public functions: (pts, piped frames (n, height, width, 3))."""
    low = -math.inf if start is None else start
    high = math.inf if end is None else end
    height = size + (reference[1] if reference else 0)
    width = max(size, reference[0]) if reference else size
    frame_bytes = height * width * 3
    process = _spawn(
        _command(path, low, size, threads, reference),
        max_memory_mb,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    log = _FrameLog(process.stderr, low, high)
    log.start()
    watchdog = _Watchdog(process, timeout_s)
    yielded, stopped, drained = 0, False, False
    try:
        while not (stopped or drained):
            pts = np.empty(batch, dtype=np.float64)
            rgb = np.empty((batch, height, width, 3), dtype=np.uint8)
            count = 0
            with watchdog:
                while count < batch:
                    got = process.stdout.readinto(memoryview(rgb[count]).cast("B"))
                    if got == 0:
                        drained = True
                        process.wait()  # still watched: FFmpeg may hang on its way out
                        break
                    frame_pts = log.pts.get()
                    if got < frame_bytes or frame_pts is None:
                        if watchdog.fired:
                            break
                        raise DecodeError(
                            "decode",
                            f"{path}: frame {yielded + count} has no pts or is cut short "
                            f"({got} of {frame_bytes} bytes); {log.last_lines()}",
                            yielded,
                        )
                    if frame_pts >= high:  # frames come out in pts order: the rest is later
                        stopped = True
                        process.kill()
                        break
                    if frame_pts >= low:
                        pts[count] = frame_pts
                        count += 1
            if watchdog.fired:
                raise DecodeError("timeout", f"{path}: decoding took over {timeout_s} s", yielded)
            if count:
                yielded += count
                yield pts[:count], rgb[:count]
        status = process.wait()
        log.join()
        if problem := _failure(status, log, yielded, stopped, whole=start is None and end is None):
            raise DecodeError("decode", f"{path}: {problem}; {log.last_lines()}", yielded)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        log.join()
        process.stderr.close()


def _failure(status: int, log: _FrameLog, yielded: int, stopped: bool, whole: bool) -> str | None:
    """Why a finished decode failed, or None. Unless we stopped FFmpeg ourselves at ``end``,
    it must have exited 0 and every pts it logged must have found its frame."""
    if not stopped and status != 0:
        return f"ffmpeg exit status {status}"
    if not stopped and log.pts.get() is not None:
        return "ffmpeg logged more frames than it wrote"
    if log.damage:
        return f"ffmpeg reported damage {log.damage} time(s), {yielded} frames kept"
    if whole and yielded == 0:
        return "no frame decoded"
    return None
