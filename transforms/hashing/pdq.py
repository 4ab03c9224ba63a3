"""PDQ as Meta defines it: the reference C++ on whole pictures, and the index's batched PDQ.

PDQ (Meta's ``pdq/cpp/hashing/pdqhashing.cpp``) takes a picture at its own size, turns it to
float luma (0.299 R + 0.587 G + 0.114 B), blurs it with a Jarosz filter (two passes of a box
of ``(side + 127) // 128`` pixels along each axis, the window clipped and renormalised at
the borders), samples that at a 64 x 64 grid of pixel centres, takes the 16 x 16 lowest
non-constant DCT frequencies and sets bit ``16 i + j`` where coefficient (i, j) is above
their median (the 128th smallest); quality is the sum of its quantised 64 x 64 gradients.
Both rest on the *full-size* picture: the blur is as wide as the picture is large.

``reference`` is that C++ itself (through ``pdqhash``, Meta's code compiled as is), on the
whole image: what ``framematch hash`` reports, bit for bit what Meta's tools compute.

``PdqSampler`` is the same function for a batch of video frames that reach Python smaller
than they were decoded (the index pipes each frame once, grey, at long side 320). Feeding a
small picture to the C++ would blur it with windows for the small size (12 bits from Meta's
hash at 320 x 180, measured; ``docs/operations.md``). Instead the blur, the sampling and the
DCT are one linear map of the frame at its source size, and that map is carried onto the
small picture's pixel grid: each small pixel is the mean of the source pixels it covers, so
it takes the summed weight of those pixels. The result is the PDQ of the source frame up to
what the reduction averaged away (within 1-2 bits of Meta's ``vpdq`` at the median, measured
in ``tests/test_pdq_conformance.py``), computed for the whole batch in four matrix products.

Codes are (N, 32) uint8 in Meta's hex order: ``bytes(code).hex()`` is ``Hash256::format()``
(word 15 first, bit 255 as the most significant), the order ``transforms.hashing.hashes``
documents for every stored hash.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pdqhash

PDQ_GRID = 64  # PDQ samples its blurred picture at 64 x 64 points
PDQ_LOW = 16  # and keeps 16 x 16 DCT frequencies (1..16 along each axis)
_MEDIAN_RANK = 127  # torben() on 256 values returns the 128th smallest
# Meta's DCT matrix (float32, as the C++ builds it): row i is frequency i + 1.
_DCT = (np.sqrt(2.0 / PDQ_GRID) * np.cos(
    np.pi / 2.0 / PDQ_GRID * np.outer(np.arange(1, PDQ_LOW + 1), 2 * np.arange(PDQ_GRID) + 1)
)).astype(np.float32)


def pack(bits: np.ndarray) -> np.ndarray:
    """(N, 256) bools, bit ``k`` at column ``k``, as (N, 32) codes in Meta's hex order."""
    return np.packbits(bits[:, ::-1], axis=1)


def reference(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """Meta's C++ PDQ of one whole (H, W, 3) uint8 RGB picture: (32,) code and quality.

    ``pdqhash.compute`` returns hash bit ``255 - i`` at element ``i``, so packing it in
    order gives Meta's hex.
    """
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb, dtype=np.uint8))
    return np.packbits(bits.astype(np.uint8)), int(quality)


def jarosz_window(side: int) -> int:
    """PDQ's box width for a picture side (``computeJaroszFilterWindowSize(side, 64)``)."""
    return (side + 2 * PDQ_GRID - 1) // (2 * PDQ_GRID)


def _box(length: int, window: int) -> np.ndarray:
    """(length, length) matrix of one pass of Meta's ``box1DFloat``: output ``o`` is the mean
    of inputs ``[o - (window - half), o + half)`` clipped to the vector, where
    ``half = (window + 2) // 2``."""
    half = (window + 2) // 2
    out = np.arange(length)[:, None]
    lo = np.maximum(out - (window - half), 0)
    hi = np.minimum(out + half, length)
    inside = (np.arange(length)[None, :] >= lo) & (np.arange(length)[None, :] < hi)
    return inside / (hi - lo)


def _area_overlap(source: int, grid: int) -> np.ndarray:
    """(grid, source): the share of source pixel ``x`` inside grid pixel ``k`` when ``source``
    pixels are area-resampled to ``grid`` (each column sums to 1)."""
    edges = np.arange(grid + 1) * source / grid
    x = np.arange(source)[None, :]
    return np.clip(np.minimum(edges[1:, None], x + 1) - np.maximum(edges[:-1, None], x), 0, None)


@lru_cache(maxsize=32)
def axis_sampler(source: int, grid: int) -> np.ndarray:
    """(64, grid) float32: PDQ's blur and 64-point sampling along one axis of ``source``
    pixels, carried onto a picture of ``grid`` pixels area-resampled from them.

    Two box passes at the source size (``jaroszFilterFloat`` with ``PDQ_NUM_JAROSZ_XY_PASSES``
    = 2), then the rows ``decimateFloat`` picks (``int((i + 0.5) * source / 64)``), then each
    source pixel's weight given to the grid pixels that cover it. With ``grid == source``
    it is PDQ's own map.
    """
    box = _box(source, jarosz_window(source))
    picked = ((np.arange(PDQ_GRID) + 0.5) * source / PDQ_GRID).astype(np.int64)
    weights = (box @ box)[picked]
    if grid != source:
        weights = weights @ _area_overlap(source, grid).T
    return weights.astype(np.float32)


def quality_of(buffers: np.ndarray) -> np.ndarray:
    """(N,) PDQ quality of (N, 64, 64) float32 blurred samples (``pdqImageDomainQualityMetric``):
    each neighbour difference scaled to 0..100 and truncated, summed, divided by 90, capped."""
    scale, full = np.float32(100), np.float32(255)
    down = np.trunc((buffers[:, :-1, :] - buffers[:, 1:, :]) * scale / full)
    across = np.trunc((buffers[:, :, :-1] - buffers[:, :, 1:]) * scale / full)
    total = (np.abs(down).sum(axis=(1, 2), dtype=np.int64)
             + np.abs(across).sum(axis=(1, 2), dtype=np.int64))
    return np.minimum(total // 90, 100)


class PdqSampler:
    """PDQ of frames of a ``source`` (width, height) video, given as smaller grey pictures.

    ``pictures`` are (N, h, w) uint8 luma, each the area resample of its source frame (what
    FFmpeg's ``scale=w:h:flags=area`` gives); the codes are PDQ of the source frames as
    Meta's C++ computes them, up to what the resample averaged away.
    """

    def __init__(self, source: tuple[int, int], picture: tuple[int, int]) -> None:
        (src_w, src_h), (w, h) = source, picture
        self.picture = picture
        self.rows = axis_sampler(src_h, h)  # (64, h)
        self.cols_t = np.ascontiguousarray(axis_sampler(src_w, w).T)  # (w, 64)

    def buffers(self, pictures: np.ndarray) -> np.ndarray:
        """(N, 64, 64) float32: the blurred, sampled pictures (PDQ's ``buffer64x64``)."""
        n, h, w = pictures.shape
        if (w, h) != self.picture:
            raise ValueError(f"pictures are {w}x{h}, this sampler expects {self.picture}")
        across = (pictures.reshape(n * h, w).astype(np.float32) @ self.cols_t).reshape(n, h, -1)
        return np.matmul(self.rows, across)

    def hash(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 32) PDQ codes in Meta's hex order and (N,) qualities 0..100."""
        if not len(pictures):
            return np.zeros((0, 32), np.uint8), np.zeros(0, np.int64)
        buffers = self.buffers(pictures)
        dct = np.matmul(np.matmul(_DCT, buffers), _DCT.T).reshape(len(pictures), -1)
        median = np.partition(dct, _MEDIAN_RANK, axis=1)[:, _MEDIAN_RANK:_MEDIAN_RANK + 1]
        return pack(dct > median), quality_of(buffers)


def of_pictures(pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PDQ of (N, h, w) grey pictures at their own size (``PdqSampler`` with source = picture)."""
    n, h, w = pictures.shape
    return PdqSampler((w, h), (w, h)).hash(pictures)
