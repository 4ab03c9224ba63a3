"""The ``framematch`` command: one sub-command per job, each a ``run(argv)``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "index": ("pipelines.index", "index a video archive into a frame-hash index"),
    "match": ("pipelines.match", "match posted images against an index"),
    "demo": ("pipelines.demo", "the story: index bundled footage, trace edited screengrabs"),
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
