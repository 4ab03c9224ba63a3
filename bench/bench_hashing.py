"""Vectorised pHash/dHash against an imagehash loop on the same inputs, and PDQ throughput.

Run ``python -m bench.bench_hashing``. The inputs are the hash inputs of thumbnails of random
crops of the scikit-image photos, so the bits compared are those of real pictures; the
reference is what a per-frame indexer would do (``imagehash`` on one Pillow image at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import imagehash
import numpy as np
import skimage
from PIL import Image

from transforms.hashing import hashes
from transforms.media.preprocess import thumbnail

N = 5000
PHOTOS = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
          "hubble_deep_field.jpg", "motorcycle_left.png", "retina.jpg", "rocket.jpg"]  # fmt: skip


def random_crop_thumbs(n: int, seed: int = 0) -> np.ndarray:
    """(n, 128, 128) thumbnails of random boxes (20..100 % of each side) of the photos."""
    rng = np.random.default_rng(seed)
    data = Path(skimage.__file__).parent / "data"
    photos = [Image.open(data / name).convert("RGB") for name in PHOTOS]
    sides = rng.uniform(0.2, 1.0, size=(n, 2))
    corners = rng.uniform(0.0, 1.0, size=(n, 2)) * (1.0 - sides)
    boxes = np.hstack([corners, corners + sides])
    picks = rng.integers(len(photos), size=n)
    return np.stack([thumbnail(photos[p], tuple(box)) for p, box in zip(picks, boxes, strict=True)])


def seconds(run: Callable[[], object], repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs, to see past other work on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


class Comparison(NamedTuple):
    """Both throughputs of one hash on the same inputs; prints as one table row."""

    name: str
    n: int
    fast: float  # vectorised, inputs/s
    slow: float  # imagehash loop, inputs/s
    identical: bool

    @property
    def ratio(self) -> float:
        return self.fast / self.slow

    def __str__(self) -> str:
        return (
            f"{self.name:<8}{self.n:>6}{self.fast:>14,.0f}{self.slow:>14,.0f}{self.ratio:>9.1f}x"
            f"   {'yes' if self.identical else 'NO'}"
        )


def compare(name: str, arrays: np.ndarray, vectorised: Callable, reference: Callable
            ) -> Comparison:
    """Both throughputs, their ratio and whether every bit agrees."""
    ours = vectorised(arrays)
    theirs = [str(reference(Image.fromarray(a))) for a in arrays]
    identical = [bytes(code).hex() for code in ours] == theirs
    fast = seconds(lambda: vectorised(arrays), repeat=5)
    slow = seconds(lambda: [reference(Image.fromarray(a)) for a in arrays], repeat=3)
    n = len(arrays)
    return Comparison(name, n, n / fast, n / slow, identical)


def main(n: int = N) -> dict[str, str]:
    """Prints the comparison on ``n`` thumbnails; returns the headline figures."""
    start = time.perf_counter()
    thumbs = random_crop_thumbs(n)
    print(f"{n} thumbnails of random photo crops built in {time.perf_counter() - start:.1f} s\n")
    header = f"{'hash':<8}{'N':>6}{'vectorised/s':>14}{'imagehash/s':>14}{'ratio':>10}"
    print(header + "   identical bits")
    phash = compare("phash", hashes.phash_input(thumbs), hashes.phash_codes, imagehash.phash)
    dhash = compare("dhash", hashes.dhash_input(thumbs), hashes.dhash_codes, imagehash.dhash)
    print(phash)
    print(dhash)
    print()
    pdq = seconds(lambda: hashes.pdq_codes_and_quality(thumbs), repeat=2)
    print(f"pdq (pdqhash, one C++ call per frame): {n / pdq:,.0f} frames/s")
    for name in ("phash", "dhash"):
        total = seconds(lambda name=name: hashes.HASHERS[name].compute(thumbs), repeat=3)
        print(f"{name} from thumbnails (input + code): {n / total:,.0f} frames/s")
    everything = seconds(lambda: hashes.hash_batch(thumbs), repeat=2)
    print(f"hash_batch (phash + dhash + pdq + quality): {n / everything:,.0f} frames/s")
    figures = {f"vectorised {c.name} vs imagehash loop, photo crops (goal >= 20x)":
               f"{c.ratio:.1f}x, identical bits: {'yes' if c.identical else 'NO'}"
               for c in (phash, dhash)}
    figures["hash_batch (PDQ + pHash + dHash)"] = f"{n / everything:,.0f} frames/s"
    return figures


if __name__ == "__main__":
    main()
