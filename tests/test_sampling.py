"""Pruning keeps the invariant the match job's radius relies on."""

from __future__ import annotations

import numpy as np

from transforms.hashing.hashes import hamming
from transforms.hashing.pruning import prune


def drifting_codes(n: int, seed: int) -> np.ndarray:
    """Hashes that drift by a random bit or two per frame, like a slow pan."""
    rng = np.random.default_rng(seed)
    codes = np.zeros((n, 32), dtype=np.uint8)
    codes[0] = rng.integers(0, 256, 32, dtype=np.uint8)
    for i in range(1, n):
        codes[i] = codes[i - 1]
        for bit in rng.integers(0, 256, rng.integers(0, 3)):
            codes[i, bit // 8] ^= np.uint8(1 << (bit % 8))
    return codes


def test_every_frame_is_within_prune_d_of_its_row():
    for seed in range(5):
        codes = drifting_codes(400, seed)
        pts = np.arange(400) * 0.04 + 1.5
        flat = np.zeros(400, dtype=bool)
        keep, ends = prune(pts, codes, flat, prune_d=8)
        assert keep[0] == 0 and 1 < len(keep) < 400
        row_of = np.searchsorted(keep, np.arange(400), side="right") - 1
        assert hamming(codes, codes[keep[row_of]]).max() <= 8
        # rows tile the timeline: each ends just before the next begins
        assert np.allclose(ends[:-1], pts[keep[1:] - 1]) and ends[-1] == pts[-1]


def test_flat_change_starts_a_row_and_static_collapses():
    codes = np.zeros((10, 32), dtype=np.uint8)
    flat = np.array([False] * 4 + [True] * 3 + [False] * 3)
    keep, ends = prune(np.arange(10.0), codes, flat, prune_d=8)
    assert keep.tolist() == [0, 4, 7]
    assert ends.tolist() == [3.0, 6.0, 9.0]


def test_empty():
    keep, ends = prune(np.zeros(0), np.zeros((0, 32), np.uint8), np.zeros(0, bool), 8)
    assert len(keep) == len(ends) == 0
