"""``framematch sql``: the results of every run as DuckDB views, for analysts.

    framematch sql OUT [--query SQL] [--max_rows N]

Views: ``matches``, ``queries``, ``dead_letter``, ``runs`` (one row per run), ``verdicts``
(every analyst verdict) and ``latest_verdicts`` (the one that counts per pair), each over
the whole history of ``OUT``. Partition columns ``run_date`` (a date) and ``run_id`` are in
every run table. Without ``--query`` it lists the views and runs the README's three analyst
queries; with it, it prints that query's result (``COPY (…) TO 'file.csv'`` exports).
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from pipelines.options import CommandParser
from transforms.results.views import ANALYST_QUERIES, VIEWS, connect


def run(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="framematch sql", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="The match job's --out directory.")
    parser.add_argument("--query", default=None, help="SQL over the views.")
    parser.add_argument("--max_rows", type=int, default=100, help="Rows printed per result.")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    con = connect(args.out)
    if args.query:
        result = con.sql(args.query)
        if result is not None:
            result.show(max_rows=args.max_rows)
        return 0
    for name in (*VIEWS, "latest_verdicts"):
        columns = con.sql(f"select * from {name}").columns
        (count,), = con.sql(f"select count(*) from {name}").fetchall()
        print(f"view {name} ({count} rows): {', '.join(columns)}")
    for title, query in ANALYST_QUERIES.items():
        print(f"\n-- {title}\n{textwrap.dedent(query).strip()};")
        con.sql(query).show(max_rows=args.max_rows)
    return 0
