"""The one preprocessing path from pixels to hash inputs, shared by videos and images.

Every hash in an index was computed from a canonical thumbnail: the picture area-resized
to ``THUMB_SIZE`` x ``THUMB_SIZE`` RGB (aspect ratio not kept), then turned grey with
Pillow's ITU-R 601-2 luma. Video frames get the resize from FFmpeg's ``area`` scaler on the
way out of the decoder; images (and query variants, which are boxes on the full image) get
it from Pillow's ``BOX`` filter. Both are area averages, so a frame and a lossless PNG of
that frame land on (nearly) the same thumbnail. Change anything here and bump
``PREPROCESS_VERSION``: the match job refuses an index built with another version.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PREPROCESS_VERSION = 1
THUMB_SIZE = 128
FLAT_STD = 8.0  # grey standard deviation below which a thumbnail is flat (fades, black gaps)

Box = tuple[float, float, float, float]  # relative (left, top, right, bottom)
FULL: Box = (0.0, 0.0, 1.0, 1.0)


# Pillow's "L" conversion: L = R*299/1000 + G*587/1000 + B*114/1000, in 16-bit fixed point.
_LUMA = np.array([19595, 38470, 7471], dtype=np.uint32)


def grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) to uint8 grey (...), bit-identical to Pillow's ``convert('L')``."""
    return ((rgb.astype(np.uint32) @ _LUMA + 0x8000) >> 16).astype(np.uint8)


def resize_rgb(image: Image.Image, box: Box | None = None) -> np.ndarray:
    """An RGB image (or a box of it, in relative 0..1 coordinates) as THUMB x THUMB RGB."""
    if box is not None:
        w, h = image.size
        left, top, right, bottom = box
        pixel_box = (left * w, top * h, right * w, bottom * h)
        resized = image.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX, box=pixel_box)
    else:
        resized = image.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
    return np.asarray(resized.convert("RGB"), dtype=np.uint8)


def thumbnail(image: Image.Image, box: Box | None = None) -> np.ndarray:
    """The canonical grey thumbnail of an RGB image or of a relative box inside it."""
    return grey(resize_rgb(image, box))


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
