"""vPDQ's own matching rule, as a partner's system applies it to two videos' frame hashes.

Meta's ``matchTwoHashBrute`` (``vpdq/cpp/vpdq/cpp/hashing/matchTwoHash.cpp``): drop frames
of PDQ quality below 50 on both sides, then count the query frames that have a target frame
closer than 31 bits (``distance < 31``), and the target frames that have a query frame that
close; each count as a percentage of its side's frames. Two videos match when both shares
are high: python-threatexchange's vPDQ signal (``vpdq_util.py``) calls it a match when the
query's share is at least 80 % (``VPDQ_QUERY_SHARE``) and the index side's at least 0 %.

``locate`` adds what vPDQ does not say and an archive needs: where in the target the query
starts, from the time offsets of the matched frame pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

VPDQ_DISTANCE = 31  # frames match when their PDQ hashes are *less* than this far apart
VPDQ_QUALITY = 50  # frames below this PDQ quality are left out on both sides
VPDQ_QUERY_SHARE = 80.0  # python-threatexchange's VPDQ_QUERY_MATCH_THRESHOLD_PERCENT


class VideoHashes(NamedTuple):
    """One video's vPDQ: (N, 32) uint8 PDQ codes, (N,) qualities and (N,) times in seconds."""

    codes: np.ndarray
    quality: np.ndarray
    ts: np.ndarray

    def usable(self, min_quality: int = VPDQ_QUALITY) -> VideoHashes:
        keep = np.asarray(self.quality) >= min_quality
        return VideoHashes(self.codes[keep], self.quality[keep], self.ts[keep])


class VpdqMatch(NamedTuple):
    query_share: float  # % of the query's usable frames with a target frame within reach
    target_share: float  # % of the target's usable frames with a query frame within reach
    offset_s: float | None  # target time minus query time, median over matched pairs


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Hamming distances between two sets of packed codes."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int32)


def match(query: VideoHashes, target: VideoHashes, distance: int = VPDQ_DISTANCE,
          min_quality: int = VPDQ_QUALITY) -> VpdqMatch:
    """vPDQ's verdict on two videos, and where the query sits in the target."""
    q, t = query.usable(min_quality), target.usable(min_quality)
    if not len(q.codes) or not len(t.codes):
        return VpdqMatch(0.0, 0.0, None)
    near = _distances(q.codes, t.codes) < distance
    query_share = 100.0 * near.any(axis=1).sum() / len(q.codes)
    target_share = 100.0 * near.any(axis=0).sum() / len(t.codes)
    return VpdqMatch(query_share, target_share, locate(q, t, distance))


def locate(query: VideoHashes, target: VideoHashes, distance: int = VPDQ_DISTANCE
           ) -> float | None:
    """Target time minus query time at which the query's frames meet the target's: each
    query frame votes with its nearest target frame (if within ``distance``), and the
    median of the votes is the offset."""
    dist = _distances(query.codes, target.codes)
    nearest = dist.argmin(axis=1)
    close = dist[np.arange(len(nearest)), nearest] < distance
    if not close.any():
        return None
    return float(np.median(target.ts[nearest[close]] - query.ts[close]))
