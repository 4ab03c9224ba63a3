"""The one preprocessing path: luma as Pillow computes it, flatness as numpy's std says."""

from __future__ import annotations

import numpy as np
from PIL import Image

from transforms.hashing.regions import REGIONS
from transforms.media import preprocess


def test_grey_is_pillows_luma():
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(preprocess.grey(rgb), expected)


def test_is_flat_is_the_plain_standard_deviation_test():
    rng = np.random.default_rng(2)
    thumbs = rng.integers(0, 256, (40, 128, 128)).astype(np.uint8)
    for i, spread in enumerate(np.linspace(0, 30, 40)):  # around the threshold, both sides
        thumbs[i] = np.clip(100 + rng.normal(0, spread, (128, 128)), 0, 255).astype(np.uint8)
    box = REGIONS[3][1]
    for region in (preprocess.FULL, box):
        left, top, right, bottom = (round(x * 128) for x in region)
        pixels = thumbs[:, top:bottom, left:right].reshape(40, -1)
        expected = pixels.std(axis=1) < preprocess.FLAT_STD
        assert np.array_equal(preprocess.is_flat(thumbs, region), expected)
    assert 0 < preprocess.is_flat(thumbs).sum() < 40
    assert preprocess.is_flat(np.zeros((0, 128, 128), np.uint8)).shape == (0,)
