"""Frame rows searchable by PDQ, at Meta's defaults: received hash lists, and exchange.

A partner sends PDQ; the index searches a 256-bit pHash key, and one cannot be computed
from the other. Rows that carry only a PDQ (imported lists) are therefore found here: exact
multi-index Hamming search over PDQ at Meta's usual distance and quality floor.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.hashing.hashes import codes_of
from transforms.search.mih import HammingIndex, Matches

PDQ_RADIUS = 31  # Meta's usual PDQ match distance
PDQ_MIN_QUALITY = 50  # Meta's usual PDQ quality floor, applied to both sides


class PdqRows:
    """Frame rows searchable by PDQ: exact Hamming range search, Meta's quality rule.

    Eligible rows have a PDQ, are not flat, and have a quality of at least ``min_quality``
    (rows of unknown quality, from bare hex lists, are kept: the sender vouched for them).
    ``keyless_only`` keeps just the rows that the key search cannot find (imported ones).
    """

    def __init__(self, frames: pa.Table, *, min_quality: int = PDQ_MIN_QUALITY,
                 keyless_only: bool = False) -> None:
        quality = frames.column("quality").fill_null(100).to_numpy()
        eligible = (pc.is_valid(frames.column("pdq")).to_numpy(zero_copy_only=False)
                    & ~frames.column("flat").to_numpy(zero_copy_only=False)
                    & (quality >= min_quality))
        if keyless_only:
            eligible &= pc.is_null(frames.column("key")).to_numpy(zero_copy_only=False)
        self.rows = np.flatnonzero(eligible)
        codes = codes_of(frames.column("pdq").take(pa.array(self.rows)))
        self.index = HammingIndex(codes) if len(self.rows) else None

    def search(self, queries: np.ndarray, radius: int = PDQ_RADIUS) -> Matches:
        """(query index, frame row, distance) of every eligible row within ``radius``.

        Queries are (Q, 32) uint8 PDQ codes; drop those of quality below the floor first.
        """
        if self.index is None:
            return np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, np.int32)
        query, row, dist = self.index.search(queries, radius)
        return query, self.rows[row], dist


def search_pdq(index_rows: pa.Table, query_pdq_codes: np.ndarray, radius: int = PDQ_RADIUS,
               *, min_quality: int = PDQ_MIN_QUALITY, keyless_only: bool = False) -> Matches:
    """One-off ``PdqRows(index_rows, ...).search(query_pdq_codes, radius)``."""
    rows = PdqRows(index_rows, min_quality=min_quality, keyless_only=keyless_only)
    return rows.search(query_pdq_codes, radius)
