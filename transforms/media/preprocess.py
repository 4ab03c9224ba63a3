"""The one preprocessing path from pixels to hash inputs, shared by videos and images.

Every key in an index was computed from a canonical thumbnail (``PREPROCESS_VERSION`` 2):
the picture's **luma first**, full range (ITU-R 601: Pillow's ``convert('L')`` of RGB, which
is also what a decoder's Y plane holds), then **area-resampled** to ``THUMB_SIZE`` x
``THUMB_SIZE`` (aspect ratio not kept), rounded to uint8.

- Images (and query variants, which are boxes on the full image): ``thumbnail`` -- Pillow
  ``convert('L')``, then Pillow's ``BOX`` resize of the box.
- Video frames: FFmpeg area-scales the decoded frame's Y plane (limited range, any source
  colour model or depth) to the stored picture size (long side 320), then that picture to
  the thumbnail with its area scaler, and the range is expanded by a table look-up
  (``transforms.media.decode``). An area resample of an area resample is an area resample
  up to rounding: a frame and a lossless PNG of it land on (nearly) the same thumbnail
  (``tests/test_index.py`` measures it).

Grey before resizing costs one channel instead of three on both paths. Version 1 resized
RGB and then took the luma; the two differ by rounding only, but keys must come from one
definition, so the match job refuses an index built with another version: change anything
here and bump ``PREPROCESS_VERSION``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PREPROCESS_VERSION = 2
THUMB_SIZE = 128
FLAT_STD = 4.0  # grey standard deviation below which a thumbnail is flat (fades, black gaps)

Box = tuple[float, float, float, float]  # relative (left, top, right, bottom)
FULL: Box = (0.0, 0.0, 1.0, 1.0)


# Pillow's "L" conversion: L = R*299/1000 + G*587/1000 + B*114/1000, in 16-bit fixed point.
_LUMA = np.array([19595, 38470, 7471], dtype=np.uint32)


def grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) to uint8 grey (...), bit-identical to Pillow's ``convert('L')``."""
    return ((rgb.astype(np.uint32) @ _LUMA + 0x8000) >> 16).astype(np.uint8)


def thumbnail(image: Image.Image, box: Box | None = None) -> np.ndarray:
    """The canonical grey thumbnail of an image or of a relative box (0..1) inside it."""
    grey_image = image if image.mode == "L" else image.convert("L")
    if box is None:
        resized = grey_image.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
    else:
        w, h = grey_image.size
        left, top, right, bottom = box
        pixel_box = (left * w, top * h, right * w, bottom * h)
        resized = grey_image.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX,
                                    box=pixel_box)
    return np.asarray(resized, dtype=np.uint8)


def is_flat(thumbs: np.ndarray, box: Box = FULL) -> np.ndarray:
    """Boolean per thumbnail: True where the picture (or a box of it) is (nearly) uniform.

    The test runs on every decoded frame, so the standard deviation is taken in float32
    with one dot product per picture (10x numpy's float64 ``std``, same answer to 0.01).
    """
    side = thumbs.shape[-1]
    left, top, right, bottom = (round(b * side) for b in box)
    area = (bottom - top) * (right - left)
    pixels = thumbs[:, top:bottom, left:right].reshape(len(thumbs), area).astype(np.float32)
    mean = pixels.mean(axis=1)
    variance = np.einsum("ij,ij->i", pixels, pixels) / max(area, 1) - mean * mean
    return np.sqrt(np.maximum(variance, 0.0)) < FLAT_STD
