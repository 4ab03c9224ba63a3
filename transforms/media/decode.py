"""Archive videos to grey pictures and canonical thumbnails, with every frame's true pts.

FFmpeg runs as a subprocess (command built with ffmpeg-python), decodes each frame once and
scales it once: to a grey picture at the size the index stores and hashes PDQ from (long
side 320), and that picture to the canonical ``THUMB_SIZE`` square thumbnail (see
``transforms.media.preprocess``), both piped raw side by side in one grey image per frame
(``decode_frames``). ``decode_rgb`` pipes whole RGB frames instead, for Meta's exact PDQ.
A reader thread drains the pipe while the caller hashes, so FFmpeg never waits for Python.
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
import fcntl
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
from typing import NamedTuple

import cv2
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
    """The first video stream of a file: absolute start time and duration in seconds, coded
    size, codec, frame rate (``avg_frame_rate``, else ``r_frame_rate``, as vPDQ reads it;
    0.0 when the container states neither), sample aspect ratio and display rotation."""

    start_time: float
    duration: float
    width: int
    height: int
    codec: str
    frame_rate: float = 0.0
    sample_aspect: float = 1.0  # width of a pixel over its height (SD broadcast: 16:15, ...)
    rotation: int = 0  # degrees the player turns the picture (phone video: 90, -90, 180)

    @property
    def display_size(self) -> tuple[int, int]:
        """The picture as a viewer sees it (and posts show it): pixels stretched to their
        aspect, turned by the display rotation (FFmpeg applies both on the way out of the
        decoder), even-sized."""
        width = max(2, 2 * round(self.width * self.sample_aspect / 2))
        height = max(2, 2 * round(self.height / 2))
        return (height, width) if self.rotation % 180 == 90 else (width, height)


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
        frame_rate=_rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate")),
        sample_aspect=_rate(stream.get("sample_aspect_ratio"), ":") or 1.0,
        rotation=_rotation(stream),
    )


def _rotation(stream: dict) -> int:
    """The display rotation in degrees, from the display matrix side data (or the old
    ``rotate`` tag), as a multiple of 90 in 0..270."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return round(-float(side["rotation"]) / 90) % 4 * 90
    tag = (stream.get("tags") or {}).get("rotate")
    return round(float(tag) / 90) % 4 * 90 if _float(tag) is not None else 0


def _rate(value: str | None, separator: str = "/") -> float:
    """An FFmpeg rational such as ``30000/1001`` (or ``16:15``) as a float (0.0 for ``0/0``
    or nothing)."""
    try:
        num, _, den = str(value).partition(separator)
        rate = float(num) / float(den or 1)
    except (TypeError, ValueError, ZeroDivisionError):
        return 0.0
    return rate if math.isfinite(rate) and rate > 0 else 0.0


def plan_segments(info: VideoInfo, segment_s: float) -> list[tuple[float, float]]:
    """Absolute ``[start, end)`` pts intervals to decode a video in parallel pieces.

    The fewest pieces of at most ``segment_s`` seconds, all of one length: a runner that
    hands out pieces in turn (Beam's embedded runner partitions a stage's input round-robin
    over its workers) then gives each worker the same amount of video, where pieces of
    ``segment_s`` and one short remainder per video would give one worker all the long ones.
    The first interval starts at -inf and the last ends at +inf, so that no frame is lost to
    a container whose reported start time or duration is slightly off (B-frame delays, a
    last frame longer than the declared duration).
    """
    if segment_s <= 0:
        raise ValueError(f"segment_s must be positive, got {segment_s}")
    count = max(1, math.ceil(info.duration / segment_s))
    bounds = [info.start_time + i * info.duration / count for i in range(1, count)]
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


# Range expansion of 8-bit limited-range luma (16..235) to full range, as swscale's gray
# output computes it: the canonical thumbnail's grey is full-range luma.
_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_PIPE_BYTES = 1 << 20  # the pipe's buffer (Linux F_SETPIPE_SZ): FFmpeg rarely waits on us
_QUEUED_BATCHES = 4  # batches read ahead of the consumer: memory stays bounded


class DecodedBatch(NamedTuple):
    """Consecutive frames of one decode: pts, canonical thumbnails and grey pictures.

    Pictures are expanded to full range only when asked for (``pictures``): the index
    needs those of the frames it keeps, a fifth of them, and the thumbnails of all.
    """

    pts: np.ndarray  # (n,) float64, absolute seconds
    thumbs: np.ndarray  # (n, THUMB_SIZE, THUMB_SIZE) uint8 grey, full range
    limited: np.ndarray  # (n, height, width) uint8 grey pictures, limited range (a view)

    def pictures(self, which: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(k, height, width) uint8 full-range grey pictures of the frames ``which`` picks."""
        chosen = np.ascontiguousarray(self.limited[which])
        return full_range(chosen)


def full_range(limited: np.ndarray) -> np.ndarray:
    """Limited-range 8-bit luma (16..235) expanded in place to full range (0..255), as
    swscale's grey output does; returns the array."""
    if limited.size:
        flat = limited.reshape(-1, limited.shape[-1])
        cv2.LUT(flat, _FULL_RANGE, dst=flat)
    return limited


def _layout(picture: tuple[int, int]) -> tuple[str, int, int]:
    """How a frame's picture and thumbnail share one piped grey image: 'hstack' (the
    thumbnail to the right, padded to the picture's height) when the picture is at least
    THUMB_SIZE high, else 'vstack' (below, padded to its width); the image's (width, height)."""
    width, height = picture
    if height >= THUMB_SIZE:
        return "hstack", width + THUMB_SIZE, height
    if width < THUMB_SIZE:
        raise ValueError(f"picture {width}x{height} is smaller than the thumbnail both ways")
    return "vstack", width, height + THUMB_SIZE


def _source(path: str, start: float, threads: int):
    """FFmpeg reading ``path`` from the keyframe before absolute ``start``: its video stream."""
    seek = {} if start == -math.inf else {"ss": repr(float(start)), "seek_timestamp": 1}
    return ffmpeg.input(_url(path), threads=threads, noaccurate_seek=None, **seek,
                        **_INPUT_GUARD)["V:0"]


def _compile(frames, threads: int) -> list[str]:
    """The command piping ``frames`` raw, one output frame per decoded frame, each logged by
    showinfo as it leaves for the pipe (scaling keeps pts and time base)."""
    # showinfo's per-frame checksums cost ~0.3 ms a frame and are not read: off.
    logged = frames.filter("showinfo", checksum=0)
    # Passthrough: one frame out per frame decoded. The encoder keeps the stream's time base
    # (-1): a coarser one would round close VFR pts together and make the muxer complain.
    output = logged.output("pipe:", format="rawvideo", fps_mode="passthrough", enc_time_base=-1)
    return output.global_args(
        "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
        "-copyts", "-filter_threads", str(threads),
    ).compile()  # fmt: skip


def _grey_command(path: str, start: float, picture: tuple[int, int], threads: int) -> list[str]:
    """Each frame once, as grey: the picture (area-scaled to ``picture``) beside its
    thumbnail (the picture area-scaled to THUMB_SIZE square), in one image per frame.

    The luma is taken as limited-range 8-bit Y (``out_range=tv``, whatever the source's
    range, depth or colour model) and its plane extracted: swscale's direct grey output
    costs FFmpeg ~2 M instructions a frame more (measured with callgrind), and expanding
    the range is a table look-up here. The thumbnail is cut from the picture, not from the
    full frame: a second full-size scale would cost FFmpeg as much as the first.
    """
    stack, _, _ = _layout(picture)
    width, height = picture
    grey = (_source(path, start, threads)
            .filter("scale", width, height, flags="area", out_range="tv")
            .filter("format", "yuv420p").filter("extractplanes", "y"))
    split = grey.filter_multi_output("split")
    pad = (THUMB_SIZE, height) if stack == "hstack" else (width, THUMB_SIZE)
    thumb = (split[1].filter("scale", THUMB_SIZE, THUMB_SIZE, flags="area", in_range="tv",
                                out_range="tv").filter("pad", *pad))
    return _compile(ffmpeg.filter([split[0], thumb], stack, inputs=2), threads)


def _rgb_command(path: str, start: float, size: tuple[int, int], threads: int) -> list[str]:
    """Each frame at ``size`` as RGB24 through swscale's ``area`` scaler: at the source size,
    the pixels Meta's vpdq hashes (it converts with ``sws_scale(..., SWS_AREA)``)."""
    frames = _source(path, start, threads).filter("scale", size[0], size[1], flags="area")
    return _compile(frames.filter("format", "rgb24"), threads)


def decode_frames(
    path: str,
    start: float | None = None,
    end: float | None = None,
    *,
    picture: tuple[int, int],
    batch: int = 64,
    timeout_s: float = 600,
    threads: int = 1,
    max_memory_mb: int | None = MAX_MEMORY_MB,
) -> Iterator[DecodedBatch]:
    """Batches of every frame's pts, canonical thumbnail and grey picture (``picture`` is
    its (width, height)), from one FFmpeg process that scales each frame once.

    Only frames with ``start <= pts < end`` are yielded (``None`` means unbounded), so the
    intervals of ``plan_segments`` partition a video's frames exactly. FFmpeg seeks to the
    keyframe before ``start`` (absolute time, ``-seek_timestamp``) and every frame it decodes
    from there is judged here, by the same pts as an unsegmented decode; decoding stops at
    the first frame at or past ``end``.

    A thread reads the pipe as fast as FFmpeg fills it (up to a few batches ahead), so FFmpeg
    decodes while the caller hashes. ``timeout_s`` bounds the total time spent waiting on
    FFmpeg (time the caller spends between batches does not count); past it FFmpeg is
    killed and DecodeError('timeout') raised. FFmpeg is always killed and reaped, also when
    the caller stops iterating early. ``max_memory_mb`` caps FFmpeg's address space (None:
    no limit); past it FFmpeg fails and DecodeError('decode') carries its "Cannot allocate
    memory".

    Damaged files: FFmpeg conceals what it can and usually exits 0 on truncated or corrupted
    data, logging errors as it goes. Every frame it outputs is yielded; then, if it exited
    non-zero or logged damage (an error, a corrupt packet or frame; see ``_FrameLog`` for seek
    pre-roll), DecodeError('decode') is raised after them, with FFmpeg's last error lines and
    ``frames`` saying how many came out. An archive wants both: the readable part of a
    truncated file searchable, and the file reported as damaged; a caller that wants all or
    nothing discards the rows when it catches the error. A whole-file decode that yields no
    frame at all is a DecodeError('decode') too.
    """
    stack, image_w, image_h = _layout(picture)
    width, height = picture
    low = -math.inf if start is None else start
    command = _grey_command(path, low, picture, threads)
    for pts, images in _decode(path, command, start, end, (image_h, image_w), batch, timeout_s,
                               max_memory_mb):
        if stack == "hstack":
            limited, thumbs = images[:, :, :width], images[:, :THUMB_SIZE, width:]
        else:
            limited, thumbs = images[:, :height], images[:, height:, :THUMB_SIZE]
        yield DecodedBatch(pts, full_range(np.ascontiguousarray(thumbs)), limited)


def decode_rgb(
    path: str,
    start: float | None = None,
    end: float | None = None,
    *,
    size: tuple[int, int],
    batch: int = 16,
    timeout_s: float = 600,
    threads: int = 1,
    max_memory_mb: int | None = MAX_MEMORY_MB,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``decode_frames``'s frames as (pts (n,), RGB uint8 (n, height, width, 3)) at ``size``
    (width, height): the video's own size gives the pixels Meta's vpdq hashes."""
    low = -math.inf if start is None else start
    command = _rgb_command(path, low, size, threads)
    yield from _decode(path, command, start, end, (size[1], size[0], 3), batch, timeout_s,
                       max_memory_mb)


class _Reader(threading.Thread):
    """Reads FFmpeg's frames into batches as fast as it writes them, pairing each with the pts
    showinfo logged for it, and queues the batches of frames in ``[low, high)``.

    Ends with one ``(status, detail)`` item: 'drained' (FFmpeg closed its output),
    'stopped' (a frame at or past ``high``: FFmpeg was killed), 'short' (a frame without
    pts or cut short; detail says which), or 'closed' (the consumer went away).
    """

    def __init__(self, process: subprocess.Popen, log: _FrameLog, low: float, high: float,
                 shape: tuple[int, ...], batch: int) -> None:
        super().__init__(daemon=True)
        self._process, self._log = process, log
        self._low, self._high = low, high
        self._shape, self._batch = shape, batch
        self.batches: queue.Queue = queue.Queue(maxsize=_QUEUED_BATCHES)
        self.closed = threading.Event()

    def _put(self, item: object) -> bool:
        while not self.closed.is_set():
            try:
                self.batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        frame_bytes = math.prod(self._shape)
        stdout, end = self._process.stdout, ("closed", None)
        try:
            while not self.closed.is_set():
                pts = np.empty(self._batch, dtype=np.float64)
                frames = np.empty((self._batch, *self._shape), dtype=np.uint8)
                count, end = 0, None
                while count < self._batch:
                    got = stdout.readinto(memoryview(frames[count]).cast("B"))
                    if got == 0:
                        end = ("drained", None)
                        break
                    frame_pts = self._log.pts.get()
                    if got < frame_bytes or frame_pts is None:
                        end = ("short", f"frame has no pts or is cut short ({got} of "
                                        f"{frame_bytes} bytes)")
                        break
                    if frame_pts >= self._high:  # frames come out in pts order: the rest is later
                        self._process.kill()
                        end = ("stopped", None)
                        break
                    if frame_pts >= self._low:
                        pts[count] = frame_pts
                        count += 1
                if count and not self._put((pts[:count], frames[:count])):
                    return
                if end is not None:
                    break
        except (OSError, ValueError) as error:  # the pipe closed under us (killed, closed)
            end = ("short", repr(error))
        self._put(end or ("closed", None))


def _decode(path: str, command: list[str], start: float | None, end: float | None,
            shape: tuple[int, ...], batch: int, timeout_s: float, max_memory_mb: int | None
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Runs ``command`` and yields (pts, frames (n, *shape)) as ``_Reader`` queues them."""
    low = -math.inf if start is None else start
    high = math.inf if end is None else end
    process = _spawn(command, max_memory_mb, stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with contextlib.suppress(OSError):  # a bigger pipe where the kernel allows it
        fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    log = _FrameLog(process.stderr, low, high)
    log.start()
    reader = _Reader(process, log, low, high, shape, batch)
    reader.start()
    watchdog = _Watchdog(process, timeout_s)
    yielded, status = 0, None
    try:
        while True:
            with watchdog:  # only waiting on FFmpeg counts against the budget
                item = reader.batches.get()
                if not isinstance(item[0], np.ndarray):
                    status, detail = item
                    if status == "drained":
                        process.wait()  # still watched: FFmpeg may hang on its way out
                    break
            if watchdog.fired:
                break
            yielded += len(item[0])
            yield item
        if watchdog.fired:
            raise DecodeError("timeout", f"{path}: decoding took over {timeout_s} s", yielded)
        if status == "short":
            raise DecodeError("decode", f"{path}: frame {yielded}: {detail}; "
                                        f"{log.last_lines()}", yielded)
        exit_status = process.wait()
        log.join()
        if problem := _failure(exit_status, log, yielded, status == "stopped",
                               whole=start is None and end is None):
            raise DecodeError("decode", f"{path}: {problem}; {log.last_lines()}", yielded)
    finally:
        reader.closed.set()
        if process.poll() is None:
            process.kill()
        process.wait()
        reader.join()
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
