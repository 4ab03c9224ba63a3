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


def test_every_region_of_every_frame_is_within_prune_d_of_its_row():
    """A region with motion of its own (the centre of a shot whose borders stand still)
    keeps frames that the whole frame's key alone would have pruned."""
    n = 400
    still = np.repeat(drifting_codes(1, 0), n, axis=0)  # the whole frame: no change at all
    moving = drifting_codes(n, 1)  # the centre crop: drifting
    codes, flat = np.stack([still, moving]), np.zeros((2, n), dtype=bool)
    pts = np.arange(n) * 0.04
    keep, _ = prune(pts, codes, flat, prune_d=8, max_row_s=1e9)
    assert prune(pts, still, flat[0], prune_d=8, max_row_s=1e9)[0].tolist() == [0]
    row_of = np.searchsorted(keep, np.arange(n), side="right") - 1
    for region in codes:
        assert hamming(region, region[keep[row_of]]).max() <= 8
    assert len(keep) > 1


def test_flat_change_starts_a_row_and_static_collapses_up_to_the_row_length():
    codes = np.zeros((10, 32), dtype=np.uint8)
    flat = np.array([False] * 4 + [True] * 3 + [False] * 3)
    keep, ends = prune(np.arange(10.0), codes, flat, prune_d=8, max_row_s=100.0)
    assert keep.tolist() == [0, 4, 7]
    assert ends.tolist() == [3.0, 6.0, 9.0]
    # a static shot still gets a row every max_row_s
    keep, ends = prune(np.arange(10.0) * 0.25, codes, np.zeros(10, bool), 8, max_row_s=1.0)
    assert keep.tolist() == [0, 4, 8] and ends.tolist() == [0.75, 1.75, 2.25]


def test_empty():
    keep, ends = prune(np.zeros(0), np.zeros((0, 32), np.uint8), np.zeros(0, bool), 8)
    assert len(keep) == len(ends) == 0
