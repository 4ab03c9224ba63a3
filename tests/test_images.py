"""load_image turns every kind of posted file into upright 8-bit RGB, or a clear ImageError."""

from __future__ import annotations

import importlib.util
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from transforms.hashing import hashes
from transforms.media import preprocess
from transforms.media.images import BACKGROUND, ImageError, load_image, read_image

SKIMAGE_DATA = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def halves(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """Left half red, right half blue: orientation and flips are visible."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2] = (255, 0, 0)
    pixels[:, size[0] // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims another size: what a decompression bomb looks like."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    header = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = header[4:12]
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def test_rgb_png_is_lossless() -> None:
    image = halves()
    loaded = load_image(encode(image, "PNG"))
    assert loaded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(image))


def test_exif_orientation_is_applied() -> None:
    image = halves()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    loaded = load_image(encode(image, "PNG", exif=exif))
    assert loaded.size == (40, 60)
    np.testing.assert_array_equal(np.asarray(loaded), np.rot90(np.asarray(image), k=-1))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_on_white(mode: str) -> None:
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., :3] = 0  # black ...
    rgba[:, :10, 3] = 255  # ... opaque on the left, fully transparent on the right
    image = Image.fromarray(rgba, "RGBA").convert(mode)
    loaded = np.asarray(load_image(encode(image, "PNG")))
    assert (loaded[:, :10] == 0).all()
    assert (loaded[:, 10:] == BACKGROUND).all()


def test_half_transparent_pixels_are_blended() -> None:
    rgba = np.full((4, 4, 4), (0, 0, 0, 128), np.uint8)
    loaded = np.asarray(load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert np.abs(loaded.astype(int) - 127).max() <= 1


def test_palette_gif_with_transparent_index() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 255, 0, 10, 20, 30] + [0] * 762)
    image.paste(0, (0, 0, 4, 8))
    loaded = np.asarray(load_image(encode(image, "GIF", transparency=1)))
    assert (loaded[:, :4] == (0, 255, 0)).all()
    assert (loaded[:, 4:] == BACKGROUND).all()


def test_colour_key_transparency() -> None:
    image = halves()
    loaded = np.asarray(load_image(encode(image, "PNG", transparency=(0, 0, 255))))
    assert (loaded[:, :30] == (255, 0, 0)).all()
    assert (loaded[:, 30:] == BACKGROUND).all()


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = halves().convert("CMYK")
    loaded = np.asarray(load_image(encode(image, "JPEG", quality=95)), dtype=int)
    assert np.abs(loaded[:, 5:25] - (255, 0, 0)).max() < 12
    assert np.abs(loaded[:, 35:55] - (0, 0, 255)).max() < 12


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 256).astype(np.uint16).reshape(1, 256).repeat(4, axis=0)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    loaded = np.asarray(load_image(encode(image, "PNG")))
    assert (loaded[..., 0] == loaded[..., 2]).all()
    np.testing.assert_array_equal(loaded[0, :, 0], np.arange(256))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.linspace(0, 1, 256, dtype=np.float32), np.arange(256)),  # float in 0..1
        (np.arange(256, dtype=np.int32), np.arange(256)),  # 32-bit holding 8-bit values
        (np.arange(256, dtype=np.int32) * 257, np.arange(256)),  # 32-bit holding 16-bit values
        (np.arange(256, dtype=np.int32) * 1000 - 5000, np.arange(256)),  # no usual range
    ],
)
def test_deep_tiff_uses_its_whole_range(values: np.ndarray, expected: np.ndarray) -> None:
    image = Image.fromarray(values.reshape(1, 256).repeat(3, axis=0))
    loaded = np.asarray(load_image(encode(image, "TIFF")))
    np.testing.assert_array_equal(loaded[1, :, 1], expected)


def test_one_bit_image() -> None:
    image = Image.new("1", (16, 8), 0)
    image.paste(1, (8, 0, 16, 8))
    loaded = np.asarray(load_image(encode(image, "PNG")))
    assert (loaded[:, :8] == 0).all() and (loaded[:, 8:] == 255).all()


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_gives_its_first_frame(fmt: str) -> None:
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, lossless=True
    )
    assert Image.open(io.BytesIO(data)).n_frames == 2
    loaded = np.asarray(load_image(data), dtype=int)
    assert np.abs(loaded - (255, 0, 0)).max() <= 2


def test_over_the_limit_is_refused_before_decoding() -> None:
    data = encode(halves((400, 300)), "PNG")
    with pytest.raises(ImageError) as error:
        load_image(data, max_pixels=100_000)
    assert error.value.stage == "too_large"
    assert load_image(data, max_pixels=120_000).size == (400, 300)


@pytest.mark.parametrize("side", [8_000, 10_000, 20_000])  # ours, Pillow's warning, Pillow's error
def test_bombs_are_too_large_and_warn_nothing(side: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError) as error:
            load_image(png_claiming(side, side))
    assert error.value.stage == "too_large"


def truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8)), "JPEG")
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    data = bytearray(encode(halves(), "PNG"))
    data[data.index(b"IDAT") + 10] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"definitely not an image",
        truncated_jpeg(),
        corrupt_png(),
        encode(halves(), "PNG")[:-40],
    ],
    ids=["empty", "text", "truncated-jpeg", "corrupt-png", "truncated-png"],
)
def test_undecodable_input_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert error.value.stage == "decode"
    assert str(error.value).startswith("decode: ")


def test_truncated_images_would_not_pass_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError):
        load_image(encode(halves(), "PNG"))


def test_read_image(tmp_path: Path) -> None:
    path = tmp_path / "post.png"
    path.write_bytes(encode(halves(), "PNG"))
    assert read_image(str(path)).size == (60, 40)
    with pytest.raises(ImageError) as error:
        read_image(str(tmp_path / "missing.png"))
    assert error.value.stage == "read"


def test_large_jpeg_is_decoded_at_a_dct_scale_with_the_same_thumbnail() -> None:
    """A 4K JPEG post decoded at 1/2 scale (both sides still >= 1024) hashes like the full
    decode: the key hash of its canonical thumbnail does not move."""
    photo = Image.open(SKIMAGE_DATA / "astronaut.png").convert("RGB")
    buffer = io.BytesIO()
    photo.resize((3840, 2160), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    full = load_image(buffer.getvalue())
    draft = load_image(buffer.getvalue(), draft_side=1024)
    assert full.size == (3840, 2160) and draft.size == (1920, 1080)
    key = hashes.HASHERS["phash256"].compute
    distance = hashes.hamming(key(preprocess.thumbnail(full)[None]),
                               key(preprocess.thumbnail(draft)[None]))[0]
    assert distance <= 4
