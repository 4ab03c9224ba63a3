"""A match output directory as DuckDB views, over its whole history of runs.

Every table is a Hive-partitioned glob (``OUT/<table>/<key>=…/…/*.parquet``) read with
``union_by_name``, so a season of nightly runs is one view even after a column was added.
Partition keys get fixed types instead of DuckDB's guesses: a run id such as ``1`` must stay
text, or its partition column would clash with the ``run_id`` column inside the files. A
table that has never been written (no run failed anything yet, no verdict recorded) is an
empty view with the table's columns, so the same queries run on a fresh directory.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from schemas.records import DEAD_LETTER_SCHEMA, MATCHES_SCHEMA, QUERIES_SCHEMA
from schemas.runs import RUNS_SCHEMA, VERDICTS_SCHEMA

RUN_PARTITIONS = {"run_date": "DATE", "run_id": "VARCHAR"}
VERDICT_PARTITIONS = {"date": "DATE"}
VIEWS: dict[str, tuple[pa.Schema, dict[str, str]]] = {  # view -> (schema, partition keys)
    "matches": (MATCHES_SCHEMA, RUN_PARTITIONS),
    "queries": (QUERIES_SCHEMA, RUN_PARTITIONS),
    "dead_letter": (DEAD_LETTER_SCHEMA, RUN_PARTITIONS),
    "runs": (RUNS_SCHEMA, RUN_PARTITIONS),
    "verdicts": (VERDICTS_SCHEMA, VERDICT_PARTITIONS),
}
_ARROW_TYPES = {"DATE": pa.date32(), "VARCHAR": pa.string()}

# The analyst's view of verdicts: the latest one per (image bytes, archive video) pair.
LATEST_VERDICTS = """
    create view latest_verdicts as select * from verdicts
    qualify row_number() over (partition by query_sha256, ref_uri order by "at" desc) = 1"""

# The README's three questions, as queries over the views (see ``framematch sql``).
ANALYST_QUERIES = {
    "new matches since yesterday (best span per image, rejected pairs left out)": """
        select m.run_date, m.query_uri, m.ref_uri, m.ref_ts_s, m.ref_ts_start_s,
               m.ref_ts_end_s, m.score, m.variant, v.verdict
        from matches m left join latest_verdicts v using (query_sha256, ref_uri)
        where m.run_date >= current_date - 1 and m.rank = 1
          and v.verdict is distinct from 'rejected'
        order by m.score desc""",
    "top source videos this week": """
        select ref_uri, count(distinct query_sha256) as images, max(run_date) as last_seen
        from matches where run_date >= current_date - 7 and rank = 1
        group by ref_uri order by images desc, ref_uri""",
    "images that failed, and why": """
        select run_date, query_uri, reason from queries where status = 'failed'
        order by run_date desc, query_uri""",
}


def table_glob(out: str, table: str) -> str:
    return f"{out.rstrip('/')}/{table}/**/*.parquet"


def has_files(out: str, table: str) -> bool:
    return bool(FileSystems.match([table_glob(out, table)])[0].metadata_list)


def _empty(schema: pa.Schema, partitions: dict[str, str]) -> pa.Table:
    fields = list(schema)
    fields += [pa.field(k, _ARROW_TYPES[t]) for k, t in partitions.items()
               if k not in schema.names]
    return pa.schema(fields).empty_table()


def connect(out: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table of ``out`` (plus ``latest_verdicts``).

    ``gs://`` outputs need DuckDB's ``httpfs`` extension and credentials set up in DuckDB.
    """
    con = duckdb.connect()
    for name, (schema, partitions) in VIEWS.items():
        if has_files(out, name):
            types = ", ".join(f"'{k}': '{t}'" for k, t in partitions.items())
            glob = table_glob(out, name).replace("'", "''")
            con.execute(f"create view {name} as select * from read_parquet('{glob}', "
                        f"hive_partitioning=true, union_by_name=true, hive_types={{{types}}})")
        else:
            con.register(name, _empty(schema, partitions))
    con.execute(LATEST_VERDICTS)
    return con
