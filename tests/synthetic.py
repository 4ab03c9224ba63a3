"""Test-only drawing helpers shared by the variant and verification tests (their own
synthetic posts, kept apart from evaluation/edits.py on purpose)."""

from __future__ import annotations

import numpy as np
from PIL import ImageDraw, ImageFont

WORDS = ("breaking", "footage", "shows", "the", "moment", "when", "everyone", "realised",
         "what", "had", "happened")


def text_lines(draw: ImageDraw.ImageDraw, xy: tuple[int, int], width: int, size: int,
               fill: tuple[int, int, int], lines: int, seed: int) -> int:
    """Draw ``lines`` lines of words from ``xy``, each at most ``width`` wide; returns the y
    below the last line."""
    font = ImageFont.load_default(size=size)
    rng = np.random.default_rng(seed)
    x, y = xy
    for _ in range(lines):
        words = " ".join(rng.choice(WORDS, size=12))
        while draw.textlength(words, font=font) > width:
            words = words.rsplit(" ", 1)[0]
        draw.text((x, y), words, fill=fill, font=font)
        y += round(size * 1.4)
    return y
