"""Robust intake of posted images: bytes in, one upright 8-bit RGB picture out, or a clear error.

Posted images are hostile in every way a file can be: rotated by an EXIF tag, transparent,
palette-based, CMYK, 16-bit, animated, truncated, not an image at all, or a tiny file that
claims a gigapixel canvas. Everything downstream (query variants, thumbnails, hashes) wants one
thing, so every oddity is resolved here, once, and every failure becomes an ``ImageError`` with
the stage that failed, so a batch job can count and report bad inputs instead of crashing.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps

from transforms.io import storage

Stage = Literal["read", "decode", "too_large"]

# Transparent pixels are composited on white: that is how social sites and browsers show a
# transparent PNG or GIF, so it is what the person who took or made the post saw.
BACKGROUND = (255, 255, 255)

# Pillow warns about large images from inside ``Image.open``, before we can look at the size.
# The warnings filter is process-global, so concurrent loads take turns while it is changed.
_OPEN_LOCK = threading.Lock()


class ImageError(Exception):
    """An input that cannot become a picture; ``stage`` says where it failed."""

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage


MAX_IMAGE_BYTES = 200 << 20  # larger files are refused before they are read whole


def read_bytes(uri: str) -> bytes:
    """A posted file's bytes (local or ``gs://``), at most ``MAX_IMAGE_BYTES``.

    Non-regular files are refused (``storage.open_input``); a file over the cap is refused
    after reading one byte past it, never read whole.
    """
    try:
        with storage.open_input(uri) as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except Exception as error:  # Beam wraps every filesystem failure differently
        raise ImageError("read", f"cannot read {uri}: {error!r}") from error
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError("too_large", f"file is over {MAX_IMAGE_BYTES >> 20} MiB")
    return data


def read_image(uri: str, *, max_pixels: int = 50_000_000) -> Image.Image:
    """``load_image`` of ``read_bytes(uri)``: the one way a file becomes a picture."""
    return load_image(read_bytes(uri), max_pixels=max_pixels)


def load_image(data: bytes, *, max_pixels: int = 50_000_000,
               draft_side: int | None = None) -> Image.Image:
    """Decode image bytes to an upright RGB picture (the first frame of an animation).

    With ``draft_side``, a JPEG larger than that is decoded at the smallest 1/2, 1/4 or 1/8
    DCT scale that keeps both sides at least ``draft_side`` (libjpeg's own downscaling, a
    few times cheaper than a full decode).

    The size in the header is checked against ``max_pixels`` before any pixel is decoded
    (Pillow's own ``MAX_IMAGE_PIXELS`` still applies on top). Truncated files are errors, not
    grey-padded pictures: this relies on ``ImageFile.LOAD_TRUNCATED_IMAGES`` staying at its
    default, False, which this module checks rather than overrides (it is process-global).
    """
    return _decode(data, max_pixels, draft_side and (draft_side, draft_side))[0]


def load_post(data: bytes, *, max_pixels: int = 50_000_000, work_side: int = 640
              ) -> tuple[Image.Image, tuple[int, int]]:
    """A posted image as the matcher works on it, and the post's own (upright) size.

    The matcher needs a few 128 px thumbnails and a picture of ~480 px, never the full
    resolution of a 12-megapixel photo: the post is decoded at a JPEG DCT scale (other
    formats in full), then reduced by an integer factor (an exact box average) so that its
    long side is ``work_side`` or a little more. Both steps are area averages, like the
    canonical thumbnail's resample, so the key hash of the copy's thumbnail is the post's.
    """
    image, scale = _decode(data, max_pixels, None, long_side=2 * work_side)
    size = (round(image.width * scale), round(image.height * scale))
    factor = max(1, max(image.size) // work_side)
    return (image.reduce(factor) if factor > 1 else image), size


def _decode(data: bytes, max_pixels: int, draft: tuple[int, int] | None,
            long_side: int | None = None) -> tuple[Image.Image, float]:
    """The upright RGB picture and the factor its size was divided by at decoding (1 unless
    a JPEG was decoded at a DCT scale: to ``draft``, or to a long side >= ``long_side``)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated images would pass")
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError("too_large", f"{width}x{height} is over the limit of {max_pixels} pixels")
    if image.format == "JPEG":
        if long_side and max(width, height) >= 2 * long_side:
            keep = long_side / max(width, height)
            image.draft("RGB", (math.ceil(width * keep), math.ceil(height * keep)))
        elif draft and min(width, height) > 2 * min(draft):
            image.draft("RGB", draft)
    try:
        image.load()  # decodes the first frame only; later frames of an animation are ignored
        scale = width / image.size[0]
        picture = to_rgb(_upright(image))
    except Exception as error:  # decoders raise OSError, SyntaxError, ValueError, EOFError...
        raise ImageError("decode", f"corrupt or truncated image: {error}") from error
    return picture, scale


def _open(data: bytes) -> Image.Image:
    """Parse the header only; every failure, including Pillow's bomb check, is an ImageError."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageError("too_large", str(error)) from error
    except Image.UnidentifiedImageError as error:  # its message names a BytesIO's address
        raise ImageError("decode", "not a readable image: no image format recognised"
                         ) from error
    except Exception as error:  # plugins' own header errors
        raise ImageError("decode", f"not a readable image: {error}") from error


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is metadata, not a reason to drop pixels."""
    try:
        return ImageOps.exif_transpose(image)
    except (ValueError, TypeError, KeyError, SyntaxError, OSError):
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha over ``BACKGROUND``, deep samples scaled, not clipped."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return Image.fromarray(_to_8bit(np.asarray(image)), "L").convert("RGB")
    if image.has_transparency_data:  # an alpha band, or a palette or colour-key transparency
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit(values: np.ndarray) -> np.ndarray:
    """Grey samples of any depth to uint8, keeping the whole range instead of clipping it.

    16-bit samples map 0..65535 onto 0..255. 32-bit integer and float samples carry no
    declared range, so the smallest usual full scale that holds them is taken (1.0 for
    floats, then 255, then 65535); anything outside all of those is stretched min..max.
    """
    samples = values.astype(np.float64)
    low, high = float(samples.min()), float(samples.max())
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        scale = 65535.0
    else:
        usual = (1.0, 255.0, 65535.0) if values.dtype.kind == "f" else (255.0, 65535.0)
        scale = next((full for full in usual if low >= 0.0 and high <= full), None)
        if scale is None:
            samples = samples - low
            scale = max(high - low, 1e-12)
    return np.rint(samples * (255.0 / scale)).clip(0, 255).astype(np.uint8)
