"""Frame pruning: decode densely, keep a frame only when its hash has moved.

A kept row stands for every following frame until the next kept one, and each of those
frames is within ``prune_d`` bits of the row's hash (that is the invariant the match job
relies on when it widens its radius by ``prune_d``). A change of the flat flag (a fade to
black starting or ending) always starts a new row, so degenerate stretches never absorb
real pictures.
"""

from __future__ import annotations

import numpy as np

DEFAULT_PRUNE_D = 8  # bits of the 256-bit key; the match radius adds it to the threshold


def prune(pts: np.ndarray, codes: np.ndarray, flat: np.ndarray, prune_d: int) -> tuple[
    np.ndarray, np.ndarray
]:
    """Indices of the kept frames and, for each, the pts of the last frame it stands for.

    ``pts`` (N,) sorted ascending; ``codes`` (N, B) packed uint8 hashes; ``flat`` (N,) bool.
    """
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    as_int = [int.from_bytes(row.tobytes(), "big") for row in codes]
    keep = [0]
    last = as_int[0]
    for i in range(1, n):
        if flat[i] != flat[keep[-1]] or (as_int[i] ^ last).bit_count() > prune_d:
            keep.append(i)
            last = as_int[i]
    keep_idx = np.asarray(keep, dtype=np.int64)
    ends = np.append(keep_idx[1:] - 1, n - 1)
    return keep_idx, pts[ends].astype(np.float64)
