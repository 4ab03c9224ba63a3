"""Which segment counts a damage message FFmpeg logs: decided by where the message sits among
the frames' lines, never by how far FFmpeg got before a segment's decode was stopped.

A segment decodes [start, end) and kills FFmpeg at its first frame at or past ``end``; by
then FFmpeg may have decoded (and complained about) a few more packets, or not, depending on
timing. ``_FrameLog`` counts only what lies between the line of the first frame at or past
``start`` and the line of the first frame at or past ``end``, so the two segments around a
boundary together count every message exactly once.
"""

from __future__ import annotations

import io
import math

from transforms.media.decode import _FrameLog

TAG = "[Parsed_showinfo_1 @ 0x55d88a181ec0] [info] "
CONFIG = TAG + "config in time_base: 1/10, frame_rate: 10/1"
DAMAGE = "[h264 @ 0x55d88a17a000] [error] corrupted macroblock 3 4 (total_coeff=-1)"


def frame(n: int, pts: int) -> str:
    return TAG + f"n:{n:4d} pts:{pts:7d} pts_time:{pts / 10:<7g} pos: -1 fmt:rgb24 iskey:0"


def damage_counted(lines: list[str], start: float, end: float) -> int:
    log = _FrameLog(io.BytesIO("".join(f"{line}\n" for line in lines).encode()), start, end)
    log.run()
    return log.damage


def test_each_message_is_counted_by_exactly_one_segment() -> None:
    # frames at 0.0 .. 0.5 s; a boundary at 0.3 s; damage before, at and after the boundary
    stream = [CONFIG, frame(0, 0), DAMAGE, frame(1, 1), frame(2, 2), DAMAGE, frame(3, 3),
              DAMAGE, frame(4, 4), frame(5, 5), DAMAGE]
    first = damage_counted(stream, -math.inf, 0.3)
    second = damage_counted(stream[:1] + stream[4:], 0.3, math.inf)  # seeked: from frame 2
    assert (first, second) == (2, 2)  # 4 messages, each once
    assert damage_counted(stream, -math.inf, math.inf) == 4


def test_what_ffmpeg_logs_after_the_boundary_frame_is_not_the_segments() -> None:
    """Killed at its first frame past ``end``: whether FFmpeg logged more before it died
    (here: two more messages) does not change what the segment counts."""
    upto_boundary = [CONFIG, frame(0, 0), DAMAGE, frame(1, 1), frame(2, 2), DAMAGE, frame(3, 3)]
    ran_on = [*upto_boundary, DAMAGE, frame(4, 4), DAMAGE]
    assert damage_counted(upto_boundary, -math.inf, 0.3) == damage_counted(
        ran_on, -math.inf, 0.3) == 2
