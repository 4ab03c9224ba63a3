"""A corpus of hostile and broken inputs for both jobs, each with the outcome it must reach.

Everything is generated (FFmpeg's lavfi sources, Pillow, byte surgery), in a second or two,
so nothing binary is committed. ``make_corpus`` writes three folders under a root:
``archive/`` (for ``framematch index``), ``images/`` (for ``framematch match``) and
``outside/``, holding the canary: a real video that every playlist-like bait in the corpus
points at. The inputs never include ``outside/``, so a canary frame in any output means a
file outside the inputs was read.

Each ``BadInput`` names the outcomes it may end in: ``indexed`` (an index row, no warning),
``warning`` (indexed in part, with a warning), ``matched`` / ``no_match`` (a query row) or
``dead:<stage>`` (a dead letter at that stage).

The corpus is the same bytes on every build: the encoders run single-threaded at a fixed
speed and the muxers bit-exact. libvpx's realtime mode with a positive ``-cpu-used`` picks
its speed from how long frames took to encode, and x264's frame threads depend on timing
too, so their output varied with the machine's load, and byte surgery at fixed offsets hit
different data: a bit-flipped WebM came out concealed (FFmpeg silent, ``indexed``) in about
1 of 8 builds. What a damaged file must become is then decided by what FFmpeg itself
reports for it (``ffmpeg_damage_outcome``), not assumed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# The name a real clip gets in the archive, and a frame of it in the images: spaces, both
# quotes, an ampersand and non-ASCII, which a shell-built command line would get wrong.
ODD_VIDEO_NAME = "clip 'one' \"two\" & ü.mp4"
ODD_IMAGE_NAME = "grab it's \"quoted\" ü.png"


@dataclass(frozen=True)
class BadInput:
    name: str  # file name inside archive/ or images/
    kind: str  # what it exercises
    expect: frozenset[str]  # outcomes it may end in


@dataclass(frozen=True)
class Corpus:
    archive: Path
    images: Path
    canary: Path
    videos: list[BadInput]
    pictures: list[BadInput]
    unlisted: list[str]  # archive entries that are not files (symlink loops): never inputs


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                   check=True)


_TESTSRC = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "2"]
_BITEXACT = ["-threads", "1", "-fflags", "+bitexact", "-flags", "+bitexact"]
_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "10",
         *_BITEXACT]
# A negative -cpu-used is a fixed speed; a positive one lets libvpx adapt it to the clock.
_VP8 = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "-8", "-b:v", "400k",
        *_BITEXACT]


def ffmpeg_damage_outcome(path: Path) -> frozenset[str]:
    """What a damaged file must become, from what FFmpeg itself says decoding it whole:
    silent (it concealed the damage) → ``indexed``; errors with frames out → ``warning``;
    errors and no frame → ``dead:decode``."""
    decoded = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i",
                              f"file:{path}", "-map", "0:V:0", "-f", "framemd5", "-"],
                             capture_output=True, text=True)
    frames = sum(1 for line in decoded.stdout.splitlines()
                 if line and not line.startswith("#"))
    if decoded.returncode == 0 and not decoded.stderr.strip():
        return frozenset({"indexed"})
    return frozenset({"warning" if frames else "dead:decode"})


def _truncate(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def _bitflip(src: Path, dst: Path) -> None:
    """Every 61st byte of the middle fifth inverted: coded picture data, not the headers."""
    data = bytearray(src.read_bytes())
    for i in range(int(len(data) * 0.4), int(len(data) * 0.6), 61):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))


def big_picture_video(path: Path, side: int = 16000) -> Path:
    """One real grey ``side`` x ``side`` Motion-JPEG picture in Matroska (3 MB for 16000):
    decoding it needs a few hundred MB on top of FFmpeg's own, a memory-bound test case."""
    still = path.with_suffix(".jpg")
    Image.new("L", (side, side), 120).save(still, quality=50)
    _ffmpeg("-i", str(still), "-c:v", "copy", "-frames:v", "1", str(path))
    still.unlink()
    return path


def _absurd_dimensions(path: Path, side: int) -> None:
    """A Motion-JPEG Matroska whose container says 16x16 and whose pictures say side x side
    (65535 x 65535 is past what FFmpeg accepts)."""
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=16x16:d=0.4:r=5", "-c:v", "mjpeg",
            "-pix_fmt", "yuvj420p", *_BITEXACT, str(path))
    header = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 16, 16)
    data = path.read_bytes()
    assert header in data, "no baseline JPEG frame header found"
    path.write_bytes(data.replace(header, header[:5] + struct.pack(">HH", side, side)))


def png_bomb(path: Path, side: int = 20000) -> None:
    """A real 1-bit ``side`` x ``side`` PNG of zeros: tens of kB on disk, 400 Mpx decoded.

    Written by hand (zlib of the scanlines) because Pillow takes seconds to save it.
    """
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(
            ">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _baits(canary: Path, folder: Path) -> list[BadInput]:
    """Files that make an unguarded FFmpeg open the canary: playlists, concat, subtitles."""
    hls = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
           "#EXTINF:1.0,\n{}\n#EXT-X-ENDLIST\n")
    (folder / "playlist.mp4").write_text(hls.format(canary))
    (folder / "playlist file url.mkv").write_text(hls.format(f"file:{canary}"))
    (folder / "playlist concat url.ts").write_text(hls.format(f"concat:{canary}|{canary}"))
    (folder / "playlist.m3u8").write_text(hls.format(canary))
    (folder / "concat.mp4").write_text(f"ffconcat version 1.0\nfile '{canary}'\n")
    (folder / "subtitles.mkv").write_text(
        f"1\n00:00:00,000 --> 00:00:01,000\n<font src=\"file:{canary}\">x</font>\n")
    probe = frozenset({"dead:probe"})
    return [
        BadInput("playlist.mp4", "HLS playlist named .mp4 listing a local file", probe),
        BadInput("playlist file url.mkv", "HLS playlist with a file: URL", probe),
        BadInput("playlist concat url.ts", "HLS playlist with a concat: URL", probe),
        BadInput("playlist.m3u8", "HLS playlist under its own extension",
                 frozenset({"dead:list"})),
        BadInput("concat.mp4", "ffconcat list naming a local file", probe),
        BadInput("subtitles.mkv", "SubRip text referencing a file: URL", probe),
    ]


def _videos(folder: Path, good: Path, canary: Path, work: Path) -> list[BadInput]:
    sources = {"mp4": work / "src.mp4", "faststart.mp4": work / "src-faststart.mp4",
               "mkv": work / "src.mkv", "webm": work / "src.webm"}
    _ffmpeg(*_TESTSRC, *_X264, str(sources["mp4"]))
    _ffmpeg(*_TESTSRC, *_X264, "-movflags", "+faststart", str(sources["faststart.mp4"]))
    _ffmpeg(*_TESTSRC, *_X264, str(sources["mkv"]))
    _ffmpeg(*_TESTSRC, *_VP8, str(sources["webm"]))
    kinds = [BadInput(ODD_VIDEO_NAME, "a good clip under a hostile name",
                      frozenset({"indexed"}))]
    shutil.copy(good, folder / ODD_VIDEO_NAME)
    _truncate(sources["mp4"], folder / "truncated.mp4", 0.5)  # index (moov) at the end: gone
    kinds.append(BadInput("truncated.mp4", "MP4 cut short, index at the end",
                          frozenset({"dead:probe"})))
    _truncate(sources["faststart.mp4"], folder / "truncated faststart.mp4", 0.5)
    kinds.append(BadInput("truncated faststart.mp4", "MP4 cut short, index in front",
                          frozenset({"warning"})))
    for ext in ("mp4", "mkv", "webm"):
        if ext != "mp4":
            _truncate(sources[ext], folder / f"truncated.{ext}", 0.5)
            kinds.append(BadInput(f"truncated.{ext}", f"{ext} cut short",
                                  ffmpeg_damage_outcome(folder / f"truncated.{ext}")))
        _bitflip(sources[ext], folder / f"bitflip.{ext}")
        kinds.append(BadInput(f"bitflip.{ext}", f"{ext} with corrupted picture data",
                              ffmpeg_damage_outcome(folder / f"bitflip.{ext}")))
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "image.mp4", format="PNG")
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac",
            str(folder / "audio only.mp4"))
    _absurd_dimensions(folder / "absurd dimensions.mkv", 65535)
    os.mkfifo(folder / "never ends.mp4")  # opening it blocks forever, like a hung mount
    (folder / "notes.txt").write_text("not a video container\n")
    probe = frozenset({"dead:probe"})
    kinds += [
        BadInput("empty.mp4", "zero bytes", probe),
        BadInput("text.mp4", "text named .mp4", probe),
        BadInput("image.mp4", "PNG named .mp4", probe),
        BadInput("audio only.mp4", "no video stream", probe),
        BadInput("absurd dimensions.mkv", "pictures of 65535x65535", frozenset({"dead:decode"})),
        BadInput("never ends.mp4", "a FIFO: reading it never ends", frozenset({"dead:read"})),
        BadInput("notes.txt", "not a video container extension", frozenset({"dead:list"})),
    ]
    return kinds + _baits(canary, folder)


def _pictures(folder: Path, frame: Image.Image, good: Path) -> list[BadInput]:
    matched, decode = frozenset({"matched"}), frozenset({"dead:decode"})
    png_bomb(folder / "bomb.png")
    frame.save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "corrupt.jpg").write_bytes(data[: len(data) // 2])
    frame.convert("CMYK").save(folder / "cmyk.jpg", quality=92)
    grey16 = np.asarray(frame.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(folder / "grey16.png")
    frame.convert("RGBA").save(folder / "alpha.png")
    frame.quantize(256).save(folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated, shown upright by the orientation tag
    frame.transpose(Image.Transpose.ROTATE_90).save(folder / "exif rotated.jpg", quality=92,
                                                    exif=exif)
    frame.save(folder / "animated.gif", save_all=True,
               append_images=[frame.transpose(Image.Transpose.FLIP_TOP_BOTTOM)])
    frame.save(folder / ODD_IMAGE_NAME)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    shutil.copy(good, folder / "video.jpg")
    os.mkfifo(folder / "never ends.jpg")
    return [
        BadInput("bomb.png", "20000x20000 PNG (decompression bomb)",
                 frozenset({"dead:too_large"})),
        BadInput("corrupt.jpg", "JPEG cut in half", decode),
        BadInput("cmyk.jpg", "CMYK JPEG", matched),
        BadInput("grey16.png", "16-bit greyscale PNG", matched),
        BadInput("alpha.png", "RGBA PNG", matched),
        BadInput("palette.png", "palette PNG", matched),
        BadInput("exif rotated.jpg", "EXIF-rotated JPEG", matched),
        BadInput("animated.gif", "animated GIF", matched),
        BadInput(ODD_IMAGE_NAME, "quotes and non-ASCII in the name", matched),
        BadInput("empty.jpg", "zero bytes", decode),
        BadInput("text.png", "text named .png", decode),
        BadInput("video.jpg", "an MP4 named .jpg", decode),
        BadInput("never ends.jpg", "a FIFO: reading it never ends", frozenset({"dead:read"})),
    ]


def make_corpus(root: Path, good: Path, frame: Image.Image) -> Corpus:
    """Write the corpus under ``root``: ``good`` is a real archive video and ``frame`` a
    picture from it, the content the well-formed but oddly encoded inputs must match."""
    archive, images, outside, work = (root / n for n in ("archive", "images", "outside", "work"))
    for folder in (archive, images, outside, work):
        folder.mkdir(parents=True)
    canary = outside / "canary.mp4"
    _ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=160x120:rate=10", "-t", "1", *_X264,
            str(canary))
    videos = _videos(archive, good, canary, work)
    loops = archive / "loops"
    loops.mkdir()
    (loops / "up").symlink_to("..")  # a directory loop
    (loops / "self.mp4").symlink_to("self.mp4")  # a link to itself
    (loops / "gone.mp4").symlink_to(root / "missing.mp4")  # dangling
    shutil.rmtree(work)
    return Corpus(archive, images, canary, videos, _pictures(images, frame, good),
                  unlisted=["loops/up", "loops/self.mp4", "loops/gone.mp4"])
