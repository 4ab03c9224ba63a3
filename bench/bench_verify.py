"""Cost of geometric verification: features of a reference and of a query, and one verify call.

Run ``python -m bench.bench_verify``. Inputs are the real frames and edited queries of
``tests/test_verify.py``; verify is timed on true pairs (one upright pass that accepts) and on
unrelated pairs (upright and mirrored passes, both rejecting), the two costs a matcher sees.
Candidates/s per core counts a verify plus the reference's JPEG decode and features, which the
matcher pays per candidate frame unless it caches them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from tests import test_verify as corpus
from transforms.media import pictures
from transforms.verify import local_features as v


def per_call_ms(run: Callable[[], object], calls: int, repeat: int = 3) -> float:
    """Best mean time per call over ``repeat`` rounds of ``calls`` calls, in ms."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1000


def main() -> dict[str, str]:
    """Prints the costs; returns the headline figures."""
    cv2.setNumThreads(1)  # per core
    frames = corpus.sources()
    stored = [pictures.encode_reference(pictures.reference_from_rgb(np.asarray(f)))
              for f in frames.values()]
    greys = [pictures.decode_reference(data) for data in stored]
    images = [corpus.jpeg(corpus.screenshot(f, seed=i)) for i, f in enumerate(frames.values())]
    refs = corpus.references()
    queries = corpus.queries()
    true = [(queries[s, e], refs[s]) for s, e in queries if s in corpus.positives()]
    names = list(refs)
    unrelated = [(queries[s, e], refs[names[(names.index(s) + 1) % len(names)]])
                 for s, e in queries]  # fmt: skip

    def cycle(items: list, call: Callable) -> Callable[[], object]:
        position = iter(range(10**9))
        return lambda: call(items[next(position) % len(items)])

    decode = per_call_ms(cycle(stored, pictures.decode_reference), 200)
    reference = per_call_ms(cycle(greys, v.features), 100)
    query = per_call_ms(cycle(images, v.query_features), 20)
    accept = per_call_ms(cycle(true, lambda pair: v.verify(*pair)), len(true))
    reject = per_call_ms(cycle(unrelated, lambda pair: v.verify(*pair)), len(unrelated))
    print(f"reference JPEG: {np.mean([len(d) for d in stored]) / 1000:.1f} kB mean, "
          f"{greys[0].shape[1]}x{greys[0].shape[0]} px")  # fmt: skip
    print(f"decode_reference:                     {decode:7.2f} ms")
    print(f"features, reference ({v.N_FEATURES}):             {reference:7.2f} ms")
    print(f"query_features (grey + {v.QUERY_FEATURES} + mirror): {query:7.2f} ms")
    print(f"verify, true pair (accepts):          {accept:7.2f} ms")
    print(f"verify, unrelated pair (2 passes):    {reject:7.2f} ms")
    figures = {}
    for label, cost in (("cached reference features", reject),
                        ("decode + features + verify", decode + reference + reject)):  # fmt: skip
        print(f"candidates/s per core, {label}: {1000 / cost:,.0f}")
        figures[f"verify candidates/s per core, {label}"] = f"{1000 / cost:,.0f}"
    figures["query_features per query"] = f"{query:.0f} ms"
    return figures


if __name__ == "__main__":
    main()
