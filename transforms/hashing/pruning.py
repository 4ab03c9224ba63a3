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


class Pruner:
    """``prune`` fed a batch at a time, as frames come out of the decoder.

    ``feed`` returns which frames of the batch are kept (indices into it); ``ends`` after
    the last batch gives, for every kept frame, the pts of the last frame it stands for.
    Codes may be (N, B) for one hash per frame or (R, N, B) for R regions (flat flags (N,)
    or (R, N)): a frame is then kept when any region moved or changed its flat flag. With
    ``max_row_s``, a frame is also kept when it is that long after the last kept one.
    """

    def __init__(self, prune_d: int, max_row_s: float | None = MAX_ROW_S) -> None:
        self.prune_d = prune_d
        self.max_row_s = max_row_s
        self._seen = 0
        self._last: list[int] | None = None  # per region, the last kept frame's key
        self._last_flat: list[bool] = []
        self._last_time = -np.inf
        self._kept: list[int] = []  # indices over everything fed
        self._pts: list[np.ndarray] = []

    def feed(self, pts: np.ndarray, codes: np.ndarray, flat: np.ndarray) -> np.ndarray:
        if codes.ndim == 2:
            codes, flat = codes[np.newaxis], np.asarray(flat)[np.newaxis]
        # each frame's regions as Python ints: XOR and bit_count per region are ~50 ns each
        as_int = [[int.from_bytes(region[i].tobytes(), "big") for region in codes]
                  for i in range(codes.shape[1])]
        flags, times = np.asarray(flat).T.tolist(), np.asarray(pts).tolist()
        keep, limit, d = [], self.max_row_s, self.prune_d
        for i, (values, is_flat, time) in enumerate(zip(as_int, flags, times, strict=True)):
            if (self._last is None or is_flat != self._last_flat
                    or (limit is not None and time - self._last_time >= limit)
                    or any((a ^ b).bit_count() > d for a, b in zip(values, self._last,
                                                                    strict=True))):
                keep.append(i)
                self._last, self._last_flat, self._last_time = values, is_flat, time
        self._kept += [self._seen + i for i in keep]
        self._seen += len(pts)
        self._pts.append(np.asarray(pts, dtype=np.float64))
        return np.asarray(keep, dtype=np.int64)

    @property
    def kept(self) -> np.ndarray:
        """Indices of the kept frames over everything fed."""
        return np.asarray(self._kept, dtype=np.int64)

    def kept_pts(self) -> np.ndarray:
        """The pts of the kept frames."""
        if not self._kept:
            return np.zeros(0, dtype=np.float64)
        return np.concatenate(self._pts)[self.kept]

    def ends(self) -> np.ndarray:
        """Per kept frame, the pts of the last frame before the next kept one (or the end)."""
        if not self._kept:
            return np.zeros(0, dtype=np.float64)
        pts = np.concatenate(self._pts)
        keep = self.kept
        return pts[np.append(keep[1:] - 1, self._seen - 1)]


def prune(pts: np.ndarray, codes: np.ndarray, flat: np.ndarray, prune_d: int,
          max_row_s: float | None = MAX_ROW_S) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the kept frames and, for each, the pts of the last frame it stands for.

    ``pts`` (N,) sorted ascending; ``codes`` (R, N, B) packed uint8 hashes of R regions (or
    (N, B) for one); ``flat`` (R, N) (or (N,)) bool. A frame is kept when, in any region,
    its hash is more than ``prune_d`` bits from the last kept frame's or its flat flag
    differs, or when it is ``max_row_s`` or more after the last kept frame.
    """
    pruner = Pruner(prune_d, max_row_s)
    pruner.feed(pts, codes, flat)
    return pruner.kept, pruner.ends()
