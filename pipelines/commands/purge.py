"""``framematch purge``: remove one posted image from every results table, everywhere.

    framematch purge --results OUT --query SHA256_OR_URI

Trust-and-safety material must be deletable on request. Every Parquet file of ``matches``,
``queries``, ``dead_letter`` and ``verdicts`` that holds rows of the image (by its sha256,
which covers every re-post of the same bytes, or by URI) is rewritten without them: written
beside the old file and renamed over it, so readers see the old or the new file, never half.
"""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.options import CommandParser
from transforms.io import parquet, storage
from transforms.results.views import table_glob

# Per results table: the columns that name a posted image (its sha256, if kept, and URI).
IMAGE_COLUMNS = {"matches": ("query_sha256", "query_uri"),
                 "queries": ("query_sha256", "query_uri"),
                 "dead_letter": (None, "uri"), "verdicts": ("query_sha256", "query_uri")}


def purge(out: str, query: str) -> dict[str, int]:
    """Rows removed per table for the image given by sha256 or URI."""
    removed: dict[str, int] = {}
    uris = {query}
    for table, (sha_column, uri_column) in IMAGE_COLUMNS.items():
        paths = [m.path for m in FileSystems.match([table_glob(out, table)])[0].metadata_list]
        removed[table] = 0
        for path in paths:
            rows = parquet.read_files([path])
            hit = pc.is_in(rows.column(uri_column), value_set=pa.array(sorted(uris)))
            if sha_column:
                hit = pc.or_(hit, pc.equal(rows.column(sha_column), query))
                uris |= set(rows.filter(hit).column(uri_column).to_pylist())
            hit = hit.fill_null(False)
            n = pc.sum(hit).as_py() or 0
            if n:
                with storage.created_atomically(path) as f:
                    pq.write_table(rows.filter(pc.invert(hit)), f)
                removed[table] += n
    return removed


def run(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="framematch purge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True)
    parser.add_argument("--query", required=True, help="The image's sha256 or URI.")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    removed = purge(args.results, args.query)
    print("purged " + ", ".join(f"{n} {t} rows" for t, n in removed.items()))
    return 0
