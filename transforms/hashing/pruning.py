"""Frame pruning: decode densely, keep a frame only when one of its hashes has moved.

A kept frame's rows (one per region: the whole frame, the centre crops, the caption bands)
stand for every following frame until the next kept one, and each of those frames is,
*in every region*, within ``prune_d`` bits of the row's hash: that is the invariant the
match job relies on when it widens its radius by ``prune_d``. A crop or a caption band has
motion of its own (a face moving inside the centre while the borders stand still), so the
test runs on every region's key, not on the whole frame's alone.

A change of a region's flat flag (a fade to black starting or ending) always starts a new
row, so degenerate stretches never absorb real pictures. And a row stands for at most
``MAX_ROW_S`` seconds: a near-static shot (a street camera, a long hold) whose hashes
barely move still gets a row, and a stored picture, every ``MAX_ROW_S``, so the moment of
a post can be told to within that (by its hashes where they differ, by local features
where only a passing car does).
"""

from __future__ import annotations

import numpy as np

DEFAULT_PRUNE_D = 8  # bits of the 256-bit key; the match radius adds it to the threshold
MAX_ROW_S = 1.0  # seconds a kept frame's rows stand for, at most


def prune(pts: np.ndarray, codes: np.ndarray, flat: np.ndarray, prune_d: int,
          max_row_s: float = MAX_ROW_S) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the kept frames and, for each, the pts of the last frame it stands for.

    ``pts`` (N,) sorted ascending; ``codes`` (R, N, B) packed uint8 hashes of R regions (or
    (N, B) for one); ``flat`` (R, N) (or (N,)) bool. A frame is kept when, in any region,
    its hash is more than ``prune_d`` bits from the last kept frame's or its flat flag
    differs, or when it is ``max_row_s`` or more after the last kept frame.
    """
    if codes.ndim == 2:
        codes, flat = codes[np.newaxis], flat[np.newaxis]
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    # each frame's regions as Python ints: XOR and bit_count per region are ~50 ns each
    as_int = [[int.from_bytes(region[i].tobytes(), "big") for region in codes]
              for i in range(n)]
    flags = flat.T.tolist()
    times = pts.tolist()
    keep = [0]
    last, last_flags, last_time = as_int[0], flags[0], times[0]
    for i in range(1, n):
        if (flags[i] != last_flags or times[i] - last_time >= max_row_s
                or any((a ^ b).bit_count() > prune_d for a, b in zip(as_int[i], last,
                                                                        strict=True))):
            keep.append(i)
            last, last_flags, last_time = as_int[i], flags[i], times[i]
    keep_idx = np.asarray(keep, dtype=np.int64)
    ends = np.append(keep_idx[1:] - 1, n - 1)
    return keep_idx, pts[ends].astype(np.float64)
