"""``framematch verdict``: an analyst confirms or rejects a (posted image, archive video) pair.

    framematch verdict --results OUT --query URI_OR_SHA256 --video URI
                       --verdict confirmed|rejected [--analyst NAME] [--note TEXT]

Reports show the latest verdict per pair and leave rejected pairs out; ``framematch sql``
has them in the ``verdicts`` (history) and ``latest_verdicts`` views.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from pipelines.options import CommandParser
from schemas.runs import VERDICTS
from transforms.results.verdicts import record_verdict


def run(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="framematch verdict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="The match job's --out directory.")
    parser.add_argument("--query", required=True, help="Posted image: its URI or sha256.")
    parser.add_argument("--video", required=True, help="Archive video URI (ref_uri).")
    parser.add_argument("--verdict", required=True, choices=VERDICTS)
    parser.add_argument("--analyst", default=getpass.getuser())
    parser.add_argument("--note", default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        record, matched = record_verdict(args.results, args.query, args.video, args.verdict,
                                         args.analyst, args.note)
    except ValueError as error:
        print(f"framematch verdict: {error}", file=sys.stderr)
        return 2
    print(f"{record.verdict}: {record.query_uri} ({record.query_sha256[:12]}…) from "
          f"{record.ref_uri}, by {record.analyst}")
    if not matched:
        print("note: framematch never matched this pair; kept as a label for calibration")
    return 0
