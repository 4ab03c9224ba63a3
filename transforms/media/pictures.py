"""The grey pictures local-feature verification compares, and how they are stored.

The index keeps each kept frame's picture as a small grey JPEG (long side ``VERIFY_SIDE``),
taken from the same FFmpeg decode as its hashes; a posted image becomes a grey picture of
long side ``QUERY_SIDE``. ``transforms.verify.local_features`` matches the two.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

VERIFY_SIDE = 320  # long side of stored reference frames, in pixels
QUERY_SIDE = 480  # long side of a query's grey picture
JPEG_QUALITY = 85  # of stored reference frames


def resize_long_side(grey: np.ndarray, side: int) -> np.ndarray:
    """Resize a grey picture so its long side is ``side`` (aspect kept; area filter to shrink)."""
    h, w = grey.shape[:2]
    factor = side / max(h, w)
    if factor == 1.0:
        return np.ascontiguousarray(grey)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_CUBIC
    return cv2.resize(grey, size, interpolation=interpolation)


def reference_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a video's reference pictures: long side VERIFY_SIDE, aspect kept,
    even (what FFmpeg scales a frame to when the index stores references)."""
    scale = VERIFY_SIDE / max(width, height, 1)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def reference_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 frame of any size as the grey uint8 reference picture (long side VERIFY_SIDE).

    Grey first, then an area resize: one channel to average instead of three.
    """
    return resize_long_side(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), VERIFY_SIDE)


def encode_reference(grey: np.ndarray) -> bytes:
    """A reference picture as grey JPEG bytes, to store in the index (about 10 kB)."""
    ok, data = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode a reference picture of shape {grey.shape}")
    return data.tobytes()


def decode_reference(data: bytes) -> np.ndarray:
    """The grey picture stored by ``encode_reference``."""
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise ValueError("not a stored reference picture")
    return grey


def decode_reference_small(data: bytes) -> np.ndarray:
    """A stored picture decoded at half size (libjpeg's DCT scaling: a quarter of the work),
    for comparisons that read it pixel by pixel at low resolution."""
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if grey is None:
        raise ValueError("not a stored reference picture")
    return grey


def query_grey(image: Image.Image) -> np.ndarray:
    """A query image as grey uint8 with long side QUERY_SIDE, for ``features``.

    Small queries are enlarged too, so that a frame shown at a given fraction of a query
    always has about the same size in pixels, whatever the resolution of the post.
    """
    return resize_long_side(np.asarray(image.convert("L")), QUERY_SIDE)
