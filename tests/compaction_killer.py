"""Runs the streaming sink's ``compact`` and SIGKILLs itself at one step of it.

    python -m tests.compaction_killer OUT STEP

STEP: ``mid-write`` (the merged file half written), ``before-rename`` (written whole, not
yet in place), ``after-rename`` (in place, the small files not yet deleted) or ``none``.
The kill is injected around the real file-system calls from here, the test's side; the
code under test is not changed.
"""

from __future__ import annotations

import os
import signal
import sys

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.records import MATCH_TABLES
from transforms.stream import window_sink


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(out: str, step: str) -> None:
    if step == "mid-write":
        write = pq.ParquetWriter.write_table
        calls = []

        def write_then_die(self, table, *args, **kwargs):
            write(self, table, *args, **kwargs)
            calls.append(1)
            if len(calls) == 2:
                die()

        pq.ParquetWriter.write_table = write_then_die
    rename = FileSystems.rename

    def rename_around(sources, destinations, *args, **kwargs):
        if step == "before-rename" and "-compact-" in destinations[0]:
            die()
        rename(sources, destinations, *args, **kwargs)
        if step == "after-rename" and "-compact-" in destinations[0]:
            die()

    FileSystems.rename = rename_around
    window_sink.compact(out, "dead_letter", MATCH_TABLES["dead_letter"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
