"""The ``framematch`` command: one sub-command per job, each a ``run(argv)``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "index": ("pipelines.index", "index a video archive into a frame-hash index"),
    "match": ("pipelines.match", "match posted images against an index"),
    "hash": ("pipelines.hash_cmd", "print PDQ / vPDQ hashes of images and videos"),
    "import": ("pipelines.import_cmd", "add a received PDQ / vPDQ / CSV hash list to an index"),
    "export": ("pipelines.export_cmd", "write an index's PDQ out as vPDQ / PDQ / CSV lists"),
    "demo": ("pipelines.demo", "the story: index bundled footage, trace edited screengrabs"),
    "sql": ("pipelines.sql_cmd", "DuckDB views over every run's results, analyst queries"),
    "report": ("pipelines.report_cmd", "one static HTML page: posted images beside their frames"),
    "verdict": ("pipelines.verdict_cmd", "record an analyst's confirmed/rejected on a match"),
    "stream": ("pipelines.stream", "match images as they land, against a growing index"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: framematch COMMAND [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<10} {help_text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    status = module.run(argv[1:])
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
