"""Query variants recover the picture from edits synthesised here from real photos.

The edits (bars, blurred pads, caption bars, two screenshot layouts) are built in this file on
purpose, with their own fonts, colours and sizes, independent of the evaluation generator, so
the detectors are tested as generic image analysis. ``CASES`` doubles as the corpus for the
per-variant detection rates reported by ``python -m tests.test_variants``.
"""

from __future__ import annotations

import importlib.util
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from tests.synthetic import text_lines
from transforms.hashing.variants import (
    BLIND_BANDS,
    ROTATIONS,
    SAME_BOX,
    Variant,
    query_variants,
    variant_thumbnails,
)
from transforms.media.preprocess import FULL, THUMB_SIZE, thumbnail

SKIMAGE_DATA = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"
PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
)

PixelBox = tuple[int, int, int, int]
Case = tuple[str, Image.Image, PixelBox, str]  # (label, query, true picture box, variant name)


def frame(name: str, size: tuple[int, int] = (960, 540)) -> Image.Image:
    """A real photo cropped and scaled to a video-frame shape."""
    with Image.open(SKIMAGE_DATA / name) as photo:
        return ImageOps.fit(photo.convert("RGB"), size, Image.Resampling.LANCZOS)


def jpeg(image: Image.Image, quality: int = 80) -> Image.Image:
    """Round-trip through JPEG, as every post does."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def paste(canvas: Image.Image, picture: Image.Image, at: tuple[int, int]) -> PixelBox:
    canvas.paste(picture, at)
    return (at[0], at[1], at[0] + picture.width, at[1] + picture.height)


def bars(picture: Image.Image, size: tuple[int, int], colour: tuple[int, int, int]) -> Case:
    canvas = Image.new("RGB", size, colour)
    box = paste(canvas, picture, ((size[0] - picture.width) // 2, (size[1] - picture.height) // 2))
    return f"bars{size}{colour}", jpeg(canvas), box, "trim"


def blurred_pad(picture: Image.Image, size: tuple[int, int]) -> Case:
    canvas = ImageOps.fit(picture, size).filter(ImageFilter.GaussianBlur(size[0] / 30))
    box = paste(canvas, picture, ((size[0] - picture.width) // 2, (size[1] - picture.height) // 2))
    return f"blurred{size}", jpeg(canvas), box, "trim"


def caption(
    picture: Image.Image,
    bar: tuple[int, int, int],
    ink: tuple[int, int, int],
    height: int,
    size: int,
    at_top: bool,
    seed: int,
) -> Case:
    canvas = Image.new("RGB", (picture.width, picture.height + height), bar)
    box = paste(canvas, picture, (0, height if at_top else 0))
    text_top = (0 if at_top else picture.height) + (height - round(size * 2.4)) // 2
    text_lines(
        ImageDraw.Draw(canvas), (size, text_top), picture.width - 2 * size, size, ink, 2, seed
    )
    where = "top" if at_top else "bottom"
    return f"caption_{where}{bar}", jpeg(canvas), box, f"caption_{where}"


def screenshot(picture: Image.Image, dark: bool, header: int, seed: int) -> Case:
    """A phone screenshot of a post: status bar, header, avatar, text, the picture, actions.

    The light layout insets the picture in the text column; the dark one runs it edge to edge.
    """
    width, height = 1080, 2220
    inset = 0 if dark else 40
    paper, ink, grey = (
        ((21, 32, 43), (231, 233, 234), (139, 152, 165))
        if dark
        else ((255, 255, 255), (15, 20, 25), (83, 100, 113))
    )
    canvas = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, 70), fill=(0, 0, 0) if dark else (242, 242, 242))
    draw.text((40, 15), "12:34", fill=grey, font=ImageFont.load_default(size=36))
    draw.ellipse((40, header, 140, header + 100), fill=(29, 155, 240))
    text_lines(draw, (170, header + 10), 800, 34, ink, 1, seed)
    y = text_lines(draw, (40, header + 140), 1000, 40 if dark else 44, ink, 3, seed + 1)
    shown = width - 2 * inset
    scaled = picture.resize((shown, round(shown * picture.height / picture.width)))
    box = paste(canvas, scaled, (inset, y + 30))
    for x in range(80, 1000, 240):
        draw.rectangle((x, box[3] + 40, x + 40, box[3] + 80), outline=grey, width=5)
    text_lines(draw, (40, box[3] + 140), 1000, 36, grey, 4, seed + 2)
    theme = "dark" if dark else "light"
    return f"screenshot_{theme}{header}", jpeg(canvas, 85), box, "embedded"


TOP_CAPTIONS = [
    ((255, 255, 255), (0, 0, 0)),
    ((0, 0, 0), (255, 255, 0)),
    ((220, 20, 60), (255,) * 3),
]
BOTTOM_CAPTIONS = [((29, 161, 242), (255, 255, 255)), ((255, 255, 255), (40, 40, 40))]


def pillarboxed(case: Case, width: int) -> Case:
    """A captioned picture inside black pillarbox bars: caption removal composes with trim."""
    label, image, (left, top, right, bottom), name = case
    canvas = Image.new("RGB", (width, image.height))
    at = (width - image.width) // 2
    canvas.paste(image, (at, 0))
    return f"pillarboxed_{label}", jpeg(canvas), (left + at, top, right + at, bottom), name


def edited_cases() -> list[Case]:
    """Edited queries with the true picture box and the variant that should recover it."""
    photos = [frame(name) for name in PHOTOS]
    cases: list[Case] = []
    for i, photo in enumerate(photos):
        small = photo.resize((640, 360))
        top_bar, top_ink = TOP_CAPTIONS[i % len(TOP_CAPTIONS)]
        bottom_bar, bottom_ink = BOTTOM_CAPTIONS[i % len(BOTTOM_CAPTIONS)]
        bottom_caption = caption(small, bottom_bar, bottom_ink, 70, 18 + i, False, seed=i)
        cases += [
            bars(small, (640, 480), [(0, 0, 0), (255, 255, 255), (200, 30, 40)][i % 3]),
            bars(ImageOps.fit(photo, (480, 360)), (640, 360), (0, 0, 0)),
            bars(small, (720, 720), [(16, 16, 16), (30, 90, 200)][i % 2]),
            blurred_pad(small, (640, 640)),
            blurred_pad(ImageOps.fit(photo, (300, 540)), (960, 540)),
            caption(small, top_bar, top_ink, 90, 22 + 2 * i, True, seed=i),
            bottom_caption,
            pillarboxed(bottom_caption, 860),
            screenshot(photo, dark=False, header=110 + 20 * i, seed=i),
            screenshot(photo, dark=True, header=180 + 10 * i, seed=i),
        ]
    return cases


CASES = edited_cases()
CLEAN = [jpeg(frame(name, size)) for name in PHOTOS for size in ((960, 540), (640, 480))]


def iou(variant: Variant, image: Image.Image, box: PixelBox) -> float:
    w, h = image.size
    left, top, right, bottom = variant.box
    found = (left * w, top * h, right * w, bottom * h)
    overlap = max(0.0, min(found[2], box[2]) - max(found[0], box[0])) * max(
        0.0, min(found[3], box[3]) - max(found[1], box[1])
    )

    def area(b: tuple[float, ...]) -> float:
        return (b[2] - b[0]) * (b[3] - b[1])

    return overlap / (area(found) + area(box) - overlap)


def recovered(case: Case) -> bool:
    _, image, box, name = case
    return any(v.name == name and iou(v, image, box) >= 0.9 for v in query_variants(image))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_edit_is_recovered(case: Case) -> None:
    assert recovered(case)


@pytest.mark.parametrize("image", CLEAN, ids=[f"{n}-{s}" for n in PHOTOS for s in ("16x9", "4x3")])
def test_clean_photo_gets_only_cheap_variants(image: Image.Image) -> None:
    names = [v.name for v in query_variants(image)]
    assert names[:2] == ["full", "full+flip"]
    assert not {"trim", "embedded", "caption_top", "caption_bottom"} & set(names)
    # full, flip, the small turns, one aspect crop, blind bands
    assert len(names) <= 2 + len(ROTATIONS) + 1 + len(BLIND_BANDS)


def test_a_dark_picture_in_a_dark_screenshot_is_found_by_its_rows() -> None:
    """A night shot in a dark theme: the picture's colours are the canvas's, so no blob of
    it survives as a rectangle, but its rows have texture and text rows do not. (Not the
    rocket: its darkened sky is the canvas's colour exactly, so the sky's rows are canvas.)"""
    for i, name in enumerate(PHOTOS):
        night = Image.eval(frame(name).resize((640, 360)), lambda v: v // 5)  # a dark grade
        kind, image, box, _ = screenshot(night, dark=True, header=180 + 10 * i, seed=i)
        found = [v for v in query_variants(image) if v.name == "embedded_rows"]
        if name != "rocket.jpg":
            assert found and iou(found[0], image, box) >= 0.9, (name, found)


def test_first_variant_is_full_and_budget_is_respected() -> None:
    image = CASES[0][1]
    assert query_variants(image)[0] == Variant("full", FULL)
    for budget in (1, 3, 5):
        assert len(query_variants(image, max_variants=budget)) == budget


def test_variants_are_distinct() -> None:
    for _, image, _, _ in CASES[:10]:
        variants = query_variants(image)
        assert len({v.name for v in variants}) == len(variants)
        for i, one in enumerate(variants):
            for other in variants[:i]:
                gap = max(abs(a - b) for a, b in zip(one.box, other.box, strict=True))
                assert one.flip != other.flip or one.angle != other.angle or gap > SAME_BOX


def test_flipped_thumbnail_is_the_thumbnail_of_the_mirrored_image() -> None:
    """A mirrored post's flip variant must land exactly on the archive frame's thumbnail."""
    original = frame("chelsea.png", (777, 431))
    box = (0.113, 0.07, 0.871, 0.93)
    posted = ImageOps.mirror(original)
    mirrored_box = (1 - box[2], box[1], 1 - box[0], box[3])
    thumbs = variant_thumbnails(posted, [Variant("x", mirrored_box, True), Variant("y", box)])
    assert thumbs.shape == (2, THUMB_SIZE, THUMB_SIZE) and thumbs.dtype == np.uint8
    np.testing.assert_array_equal(thumbs[0], thumbnail(original, box))
    np.testing.assert_array_equal(thumbs[1], thumbnail(posted, box))


def test_trim_thumbnail_matches_the_frame() -> None:
    """End to end: the trimmed variant's thumbnail is close to the unpadded frame's."""
    picture = frame("astronaut.png", (640, 360))
    _, image, _, _ = bars(picture, (640, 480), (0, 0, 0))
    variants = [v for v in query_variants(image) if v.name in ("full", "trim")]
    full, trimmed = variant_thumbnails(image, variants).astype(int)
    target = thumbnail(picture).astype(int)
    assert np.abs(trimmed - target).mean() < 3 < np.abs(full - target).mean()


def timed_query(image: Image.Image, repeats: int) -> float:
    """Mean CPU ms for query_variants + variant_thumbnails (printed by ``report``; speed is
    measured by ``make bench``, never asserted by a test)."""
    start = time.process_time()
    for _ in range(repeats):
        variant_thumbnails(image, query_variants(image))
    return (time.process_time() - start) / repeats * 1000


def report() -> None:
    """Per-variant detection rates on CASES, variant counts on CLEAN, and the time per query."""
    kinds: dict[str, list[bool]] = {}
    for case in CASES:
        kinds.setdefault(case[3], []).append(recovered(case))
    for kind, hits in kinds.items():
        print(f"{kind:15s} recovered (IoU >= 0.9) in {sum(hits)}/{len(hits)}")
    detectors = ("trim", "caption_top", "caption_bottom", "embedded")
    fired = [
        (v.name, iou(v, image, box) >= 0.9)
        for _, image, box, _ in CASES
        for v in query_variants(image)
        if v.name in detectors
    ]
    fired += [
        (v.name, False) for image in CLEAN for v in query_variants(image) if v.name in detectors
    ]
    for name in detectors:
        right = [ok for fired_name, ok in fired if fired_name == name]
        print(f"{name:15s} fired {len(right)} times, {len(right) - sum(right)} off the picture")
    counts = [len(query_variants(image)) for image in CLEAN]
    print(f"clean photos: {np.mean(counts):.1f} variants on average")
    for label, image in (
        ("clean 1280x720", jpeg(frame("coffee.png", (1280, 720)))),
        ("padded 1280x720", bars(frame("rocket.jpg", (960, 540)), (1280, 720), (0, 0, 0))[1]),
    ):
        n = len(query_variants(image))
        print(f"{label}: {n} variants, {timed_query(image, 50):.2f} CPU ms/query")


if __name__ == "__main__":
    report()
