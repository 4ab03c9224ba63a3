"""Query variants: the few boxes of a posted image worth hashing, best first.

A post is rarely the bare frame: it is mirrored, letterboxed, padded to a square (with bars or
with a blurred copy of itself), captioned, or a phone screenshot of a social-media post with the
frame somewhere inside. Each of these is undone by looking at the image (generic image analysis:
flat bars, low-texture pads, a textured rectangle on a flat canvas, a flat band with text), not
by knowing how the post was made; cheap blind boxes (aspect crops, caption bands) back the
detectors up. ``_GENERATORS`` is the one list of what exists, in order of prior usefulness, and
``max_variants`` bounds the cost: the pipeline hashes one thumbnail per variant.

All analysis runs on one small copy of the image (long side about ``ANALYSIS_SIDE``), so a
query costs a few milliseconds whatever its size; only the thumbnails read full resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from transforms.hashing.regions import CAPTION_CUTS
from transforms.media.preprocess import FULL, Box, thumbnail

ANALYSIS_SIDE = 384
LUMA = np.float32([0.299, 0.587, 0.114])  # grey for analysis only; thumbnails use preprocess
MIN_ANALYSIS_SIDE = 16  # smaller analysis images get the blind variants only
ASPECTS = (("16:9", 16 / 9), ("4:3", 4 / 3))  # frame shapes of the archive worth cropping to
# Kept rows of the blind caption bands: the same bands the index holds as reference regions.
BLIND_BANDS = (("band_top85", (0.0, 1 - CAPTION_CUTS[0])),
               ("band_mid70", (CAPTION_CUTS[0], 1 - CAPTION_CUTS[0])),
               ("band_bottom85", (CAPTION_CUTS[0], 1.0)))
COLOUR_TOL = 16  # max channel difference still "the same flat colour" after JPEG
TEXT_CONTRAST = 64  # max channel difference of text against its bar
NOISE_TEXTURE = 0.5  # mean |grey step| that JPEG noise alone leaves on a flat area
PAD_CONTRAST = 2.8  # how much more textured a picture is than the blurred pads around it
SOLIDITY = 0.8  # share of its bounding box a photo's blob fills (canvas-coloured edges cut in)
BAND_TEXTURE = 2 * NOISE_TEXTURE  # a row of a picture, even a dark one, has at least this
PICTURE_TEXTURE = 4 * NOISE_TEXTURE  # mean |grey step| below which a panel is flat, no photo
SAME_BOX = 0.015  # boxes closer than this on every side are the same variant


ROTATIONS = (-2.0, 2.0, -4.0, 4.0)  # degrees: small tilts of a re-photographed or edited post
TURN_SIDE = 256  # long side a box is turned at (the key's resample reads 64 px)


@dataclass(frozen=True)
class Variant:
    """A relative box (left, top, right, bottom) on the upright image, optionally mirrored,
    or turned by ``angle`` degrees (counter-clockwise, as Pillow turns) and cut to the
    largest box of its shape that the turn leaves without corners."""

    name: str
    box: Box
    flip: bool = False
    angle: float = 0.0


def query_variants(image: Image.Image, max_variants: int = 16) -> list[Variant]:
    """Up to ``max_variants`` distinct variants of ``image``, best first; the first is 'full'."""
    query = _Query(image)
    kept: list[Variant] = []
    for generate in _GENERATORS:
        for variant in generate(query):
            if len(kept) == max_variants:
                return kept
            if _is_new(variant, kept):
                kept.append(variant)
    return kept


def variant_thumbnails(image: Image.Image, variants: list[Variant]) -> np.ndarray:
    """(V, THUMB, THUMB) uint8 canonical thumbnails, one per variant.

    A flipped variant is the thumbnail of the mirrored image over the mirrored box, not the
    mirrored thumbnail: area resampling does not commute with mirroring on fractional boxes
    (up to 16 grey levels apart), and the mirrored image is exactly what the archive frame was.
    """
    mirrored = ImageOps.mirror(image) if any(v.flip for v in variants) else None
    return np.stack(
        [
            _turned_thumbnail(image, v) if v.angle
            else thumbnail(mirrored, _mirror(v.box)) if v.flip else thumbnail(image, v.box)
            for v in variants
        ]
    )


def _turned_thumbnail(image: Image.Image, variant: Variant) -> np.ndarray:
    """The thumbnail of a variant's box turned by its angle, inside the turned corners.

    A post turned by a few degrees was cut to hide its corners; turning it back leaves new
    corners, so the thumbnail is of the largest centred box of the same shape inside them:
    about a centre crop of the frame, which the index holds as a region.
    """
    w, h = image.size
    left, top, right, bottom = variant.box
    pixels = (left * w, top * h, right * w, bottom * h)
    # turned at a size just above what the key reads (its 64 px resample): a turn costs
    # a tenth of a millisecond there, several on the full copy
    shrink = min(1.0, TURN_SIDE / max(pixels[2] - pixels[0], pixels[3] - pixels[1]))
    size = (max(1, round((pixels[2] - pixels[0]) * shrink)),
            max(1, round((pixels[3] - pixels[1]) * shrink)))
    piece = image.resize(size, Image.Resampling.BOX, box=pixels)
    pw, ph = piece.size
    a = math.radians(abs(variant.angle))
    keep = min(pw / (pw * math.cos(a) + ph * math.sin(a)),
               ph / (pw * math.sin(a) + ph * math.cos(a)))
    turned = piece.rotate(variant.angle, resample=Image.Resampling.BILINEAR)
    margin_x, margin_y = (1 - keep) / 2, (1 - keep) / 2
    return thumbnail(turned, (margin_x, margin_y, 1 - margin_x, 1 - margin_y))


def _mirror(box: Box) -> Box:
    left, top, right, bottom = box
    return (1.0 - right, top, 1.0 - left, bottom)


def _is_new(variant: Variant, kept: list[Variant]) -> bool:
    return all(
        other.flip != variant.flip or other.angle != variant.angle
        or max(abs(a - b) for a, b in zip(other.box, variant.box, strict=True)) > SAME_BOX
        for other in kept
    )


class _Query:
    """The small analysis copy of a query and the detections on it, each computed at most once."""

    def __init__(self, image: Image.Image) -> None:
        self.width, self.height = image.size
        factor = max(1, math.ceil(max(image.size) / ANALYSIS_SIDE))
        small = image.reduce(factor) if factor > 1 else image
        # Channel-first (3, H, W): per-pixel colour distances then run on contiguous planes.
        self.planes = np.asarray(small.convert("RGB"), dtype=np.int16).transpose(2, 0, 1).copy()
        _, rows, cols = self.planes.shape
        self.grey = (LUMA @ self.planes.reshape(3, -1)).reshape(rows, cols)
        # Relative coordinate of each analysis pixel edge (the last one may be partial).
        self.x_edges = np.minimum(np.arange(cols + 1) * factor / self.width, 1.0)
        self.y_edges = np.minimum(np.arange(rows + 1) * factor / self.height, 1.0)

    def relative(self, left: int, top: int, right: int, bottom: int) -> Box:
        """Analysis pixel bounds (right, bottom exclusive) to a relative box."""
        x, y = self.x_edges, self.y_edges
        return (float(x[left]), float(y[top]), float(x[right]), float(y[bottom]))

    def aspect(self, box: Box) -> float:
        left, top, right, bottom = box
        return (right - left) * self.width / ((bottom - top) * self.height)

    @cached_property
    def analysable(self) -> bool:
        """Whether the image is big enough for the detectors to mean anything."""
        return min(self.grey.shape) >= MIN_ANALYSIS_SIDE

    @cached_property
    def trim(self) -> Box | None:
        """The picture inside uniform borders, letterbox/pillarbox bars or blurred pads."""
        if not self.analysable:
            return None
        rows, cols = self.grey.shape
        top, bottom = _pad_depths(self.planes, self.grey)
        left, right = _pad_depths(self.planes.transpose(0, 2, 1), self.grey.T)
        if rows - top - bottom < 0.25 * rows or cols - left - right < 0.25 * cols:
            return None  # (nearly) all "padding": a flat or featureless image, not a pad
        if max(top, bottom, left, right) == 0:
            return None
        return self.relative(left, top, cols - right, rows - bottom)

    @cached_property
    def base(self) -> Box:
        """The picture as best known before cropping further: trimmed if trim found pads."""
        return self.trim or FULL

    @cached_property
    def embedded(self) -> Box | None:
        """The photo inside a screenshot: the largest textured rectangle on a flat canvas.

        The canvas colour is the commonest border colour (light or dark theme alike). Pixels
        off that colour are text, icons and pictures; an opening with a square wider than a
        text stroke erases text, so the surviving blobs are pictures and flat panels (a
        button, a placeholder, a coloured card). The photo is the largest blob that is
        solid, rectangular, surrounded mostly by canvas, and textured like a picture (a
        flat panel, however large, is not the photo: a feed's next post or an ad block
        often is bigger than the post's own picture).
        """
        if not self.analysable:
            return None
        rows, cols = self.grey.shape
        canvas = _near(self.planes, _border_colour(self.planes))
        side = max(5, round(0.03 * min(rows, cols)))
        solid = ndimage.grey_opening((~canvas).view(np.uint8), size=(side, side))
        # dark (or light) parts of the photo that match the canvas colour are holes in it
        labels, count = ndimage.label(ndimage.binary_fill_holes(solid))
        if count == 0:
            return None
        sizes = np.bincount(labels.ravel())[1:]
        objects = ndimage.find_objects(labels)
        for blob in np.argsort(-sizes, kind="stable").tolist():
            if sizes[blob] < 0.08 * rows * cols:
                return None  # the rest are smaller still
            rows_slice, cols_slice = objects[blob]
            box_area = (rows_slice.stop - rows_slice.start) * (cols_slice.stop - cols_slice.start)
            inside = np.zeros_like(canvas)
            inside[rows_slice, cols_slice] = True
            if (box_area <= 0.85 * rows * cols
                    and sizes[blob] >= SOLIDITY * box_area
                    and canvas[~inside].mean() >= 0.5
                    and canvas[inside].mean() <= 0.3
                    and _texture(self.grey[rows_slice, cols_slice]) > PICTURE_TEXTURE):
                return self.relative(cols_slice.start, rows_slice.start, cols_slice.stop,
                                     rows_slice.stop)
        return None

    @cached_property
    def picture_band(self) -> Box | None:
        """The picture of a phone screenshot found by rows, when its colours are the
        canvas's (a dark photo in a dark theme, a starry sky on black): the longest run of
        rows that are all textured. Lines of text leave plain rows between them, a flat
        panel has no texture, but a picture has some in every row; its side margins, if
        any, are the plain columns at either end of the band (inside it, even a dark
        column of the picture has some texture)."""
        if not self.analysable:
            return None
        rows, cols = self.grey.shape
        if rows < 1.4 * cols:  # only a tall screenshot holds a post's picture with text
            return None
        texture = np.abs(np.diff(self.grey, axis=1)).mean(axis=1)
        # a smooth stretch of the picture (sky, a dark floor) is bridged where it is short
        # and not quite flat; the canvas between lines of text is flat
        bridged = texture > BAND_TEXTURE
        smooth = (texture > NOISE_TEXTURE / 2) & ~bridged
        start, stop = _longest_run(smooth)
        while stop > start:
            if stop - start <= 0.05 * rows:
                bridged[start:stop] = True
            smooth[start:stop] = False
            start, stop = _longest_run(smooth)
        top, bottom = _longest_run(bridged)
        if bottom - top < 0.3 * cols or bottom - top > 0.8 * rows:
            return None
        textured = np.flatnonzero(np.abs(np.diff(self.grey[top:bottom], axis=0)).mean(axis=0)
                                  > NOISE_TEXTURE / 2)  # a smooth column of it too
        if not len(textured) or textured[-1] + 1 - textured[0] < 0.5 * cols:
            return None
        left, right = int(textured[0]), int(textured[-1]) + 1
        return self.relative(left, top, right, bottom)

    def caption_edge(self, from_bottom: bool) -> float | None:
        """Where a caption bar at the top (or bottom) of the image ends, relatively, if any.

        Looked for from the image edge, within the base box's columns: trimming stops at
        the first text row of a caption bar, so the bar's edge is the image's, not the box's.
        """
        if not self.analysable:
            return None
        left, _, right, _ = self.base
        cols = slice(
            int(np.searchsorted(self.x_edges, left)), int(np.searchsorted(self.x_edges, right))
        )
        band = self.planes[:, :, cols]
        depth = _caption_rows(band[:, ::-1] if from_bottom else band)
        if not depth:
            return None
        return float(self.y_edges[band.shape[1] - depth if from_bottom else depth])


def _texture(grey: np.ndarray) -> float:
    """Mean absolute grey step between horizontal neighbours: JPEG noise alone leaves
    ``NOISE_TEXTURE``; a photo, even a smooth one, leaves several times that."""
    return float(np.abs(np.diff(grey, axis=1)).mean()) if grey.shape[1] > 1 else 0.0


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """``(start, stop)`` of the longest run of True in ``flags`` ((0, 0) if none)."""
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(np.int8), 0]))
    starts, stops = edges[0::2], edges[1::2]
    if not len(starts):
        return 0, 0
    longest = int(np.argmax(stops - starts))
    return int(starts[longest]), int(stops[longest])


def _border_colour(planes: np.ndarray) -> np.ndarray:
    """The median colour of the commonest coarse colour on the image border."""
    border = np.concatenate([planes[:, 0], planes[:, -1], planes[:, :, 0], planes[:, :, -1]], 1)
    red, green, blue = border // 32
    keys = (red * 8 + green) * 8 + blue
    commonest = np.bincount(keys).argmax()
    return np.median(border[:, keys == commonest], axis=1)


def _distance(planes: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The largest channel difference of each pixel of int16 (3, ...) planes from ``colour``."""
    colour = np.round(colour).astype(np.int16).reshape(3, *[1] * (planes.ndim - 1))
    return np.abs(planes - colour).max(axis=0)


def _near(pixels: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels within COLOUR_TOL of ``colour`` on every channel."""
    return _distance(pixels, colour) <= COLOUR_TOL


def _leading(mask: np.ndarray) -> int:
    """Number of leading True values."""
    return int(np.argmin(mask)) if not mask.all() else len(mask)


def _pad_depths(planes: np.ndarray, grey: np.ndarray) -> tuple[int, int]:
    """Rows of padding at the top and at the bottom of a (3, H, W) image.

    Uniform bars (any colour, JPEG noise tolerated) count on either side alone. Low-texture
    bands (a blurred copy used as padding) are looked for as a pair, as a picture centred on
    a taller canvas makes them, unless a matching pair of uniform bars already says where
    the picture is: smooth sky inside a letterboxed picture is not more padding.
    """
    half = len(grey) // 2  # deeper bars would leave too little picture anyway
    top, bottom = (
        _leading(_near(side[:, :half], side[:, 0].mean(axis=1)).mean(axis=1) >= 0.95)
        for side in (planes, planes[:, ::-1])
    )
    if min(top, bottom) >= 0.02 * len(grey) and abs(top - bottom) <= 2:
        return top, bottom
    blurred = _blurred_depths(np.abs(np.diff(grey, axis=1)).mean(axis=1))
    return max(top, blurred[0]), max(bottom, blurred[1])


def _blurred_depths(texture: np.ndarray) -> tuple[int, int]:
    """Depths of a pair of smooth bands at both ends of a per-row texture profile, or (0, 0).

    For each depth, each side scores how much more textured the rows just inside are than
    the band outside (JPEG noise as the floor). A centred picture scores high on both sides
    at the same depth; a photo with a smooth sky scores on one side at most. Each side's
    depth is then refined a little, since centring rounds.
    """
    rows = len(texture)
    inner = max(2, round(0.05 * rows))
    depths = np.arange(max(2, round(0.02 * rows)), int(0.4 * rows))
    if len(depths) == 0:
        return 0, 0
    scores = []
    for profile in (texture, texture[::-1]):
        total = np.concatenate([[0.0], np.cumsum(profile)])
        band = total[depths] / depths
        inside = (total[depths + inner] - total[depths]) / inner
        scores.append(inside / (band + NOISE_TEXTURE))
    pair = np.sqrt(scores[0] * scores[1])
    best = int(np.argmax(pair))
    if pair[best] < PAD_CONTRAST or min(scores[0][best], scores[1][best]) < 1.5:
        return 0, 0
    near = slice(max(0, best - 2), best + 3)
    top, bottom = (int(depths[near][np.argmax(side[near])]) for side in scores)
    return top, bottom


def _caption_rows(band: np.ndarray) -> int:
    """Rows of a caption bar at the top of ``band`` (3, H, W), or 0 if there is none.

    A caption bar is a flat colour with high-contrast text on it. The picture starts where
    rows stop being the bar colour for a while; a line of big text can look like that too,
    so the start must follow a clean margin row of pure bar colour, with text rows above it.
    """
    rows, run = band.shape[1], 4
    diff = _distance(band[:, : int(0.45 * rows) + run], np.median(band[:, 0], axis=1))
    bar = (diff <= COLOUR_TOL).mean(axis=1)
    text = (diff >= TEXT_CONTRAST).mean(axis=1)
    margin = max(3, round(0.03 * rows))
    starts = np.flatnonzero(np.convolve(bar < 0.25, np.ones(run), "valid") == run)
    for end in starts[(starts >= 0.03 * rows) & (starts <= 0.45 * rows)]:
        has_margin = bar[end - margin : end].max() >= 0.9
        has_text = np.count_nonzero((text[:end] >= 0.02) & (bar[:end] >= 0.1)) >= 2
        if has_margin and has_text:
            return int(end)
    return 0


def _full(query: _Query) -> Iterator[Variant]:
    yield Variant("full", FULL)
    yield Variant("full+flip", FULL, True)


def _trimmed(query: _Query) -> Iterator[Variant]:
    if query.trim:
        yield Variant("trim", query.trim)


def _embedded(query: _Query) -> Iterator[Variant]:
    if query.embedded:
        yield Variant("embedded", query.embedded)
    if query.picture_band:
        yield Variant("embedded_rows", query.picture_band)


def _captions(query: _Query) -> Iterator[Variant]:
    """A caption bar is either added to the frame (cut it off: the rest is the whole frame)
    or laid over it (the rest is a band of the frame: cut at the next reference band, so
    that the query meets a reference region hashed over the same rows). A bar laid over the
    frame may have been eaten into by trimming (its plain margin looks like a border), so
    the overlay cut is tried on the untrimmed image too."""
    left, top, right, bottom = query.base
    edge = query.caption_edge(from_bottom=False)
    if edge is not None and edge > top:
        yield Variant("caption_top", (left, edge, right, bottom))
        for suffix, (x0, y0, x1, y1) in _frames(query):
            cut = _band_cut((edge - y0) / (y1 - y0))
            if cut is not None:
                yield Variant(f"caption_top_over{round(100 * cut)}{suffix}",
                              (x0, y0 + cut * (y1 - y0), x1, y1))
    edge = query.caption_edge(from_bottom=True)
    if edge is not None and edge < bottom:
        yield Variant("caption_bottom", (left, top, right, edge))
        for suffix, (x0, y0, x1, y1) in _frames(query):
            cut = _band_cut((y1 - edge) / (y1 - y0))
            if cut is not None:
                yield Variant(f"caption_bottom_over{round(100 * cut)}{suffix}",
                              (x0, y0, x1, y1 - cut * (y1 - y0)))


def _frames(query: _Query) -> list[tuple[str, Box]]:
    """The boxes a laid-over caption may be measured against: the base, and the whole image."""
    return [("", query.base)] + ([("_untrimmed", FULL)] if query.base != FULL else [])


def _band_cut(covered: float) -> float | None:
    """The smallest reference band cut that removes a caption covering ``covered``."""
    return next((cut for cut in CAPTION_CUTS if covered <= cut + SAME_BOX), None)


def _flips(query: _Query) -> Iterator[Variant]:
    for name, box in (("trim", query.trim), ("embedded", query.embedded),
                      ("embedded_rows", query.picture_band)):
        if box:
            yield Variant(f"{name}+flip", box, True)


def _rotations(query: _Query) -> Iterator[Variant]:
    """The picture (trimmed of pads) turned back by small angles either way: hashes do not
    survive a turn of a few degrees (60-80 of 256 bits), a turn back within a degree does."""
    for angle in ROTATIONS:
        yield Variant(f"turn{angle:+g}", query.base, angle=angle)


def _aspect_crops(query: _Query) -> Iterator[Variant]:
    """Centred boxes of each archive aspect inside the base box, where its shape differs."""
    left, top, right, bottom = query.base
    have = query.aspect(query.base)
    for name, want in ASPECTS:
        if abs(math.log(have / want)) < 0.05:
            continue
        if have > want:  # too wide: keep the middle columns
            margin = (right - left) * (1 - want / have) / 2
            yield Variant(f"aspect_{name}", (left + margin, top, right - margin, bottom))
        else:  # too tall: keep the middle rows
            margin = (bottom - top) * (1 - have / want) / 2
            yield Variant(f"aspect_{name}", (left, top + margin, right, bottom - margin))


def _blind_bands(query: _Query) -> Iterator[Variant]:
    """Caption bands the detector may have missed (subtitles, text over the picture)."""
    left, top, right, bottom = query.base
    height = bottom - top
    for name, (keep_top, keep_bottom) in BLIND_BANDS:
        yield Variant(name, (left, top + keep_top * height, right, top + keep_bottom * height))


_GENERATORS: tuple[Callable[[_Query], Iterator[Variant]], ...] = (
    _full,
    _trimmed,
    _captions,
    _embedded,
    _flips,
    _rotations,
    _aspect_crops,
    _blind_bands,
)
