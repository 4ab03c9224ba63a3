"""The ``framematch`` command: one sub-command per job, each a ``run(argv)`` (or the function
named after a colon in ``COMMANDS``).

Exit codes, for schedulers: 0 success, 3 partial success (some inputs were dead-lettered;
the run's outputs are complete for the rest), 1 failure (an error, every input failed, or
the run's own counts do not reconcile), 2 usage error. Jobs that write a run record (index,
match) end with one summary line saying which, and warn on stderr when dead letters pass
half the inputs or non-zero input produced no output.
"""

from __future__ import annotations

import importlib
import signal
import sys

from schemas.runs import RunRecord

COMMANDS = {  # name -> ("module[:function]", help)
    "index": ("pipelines.index", "index a video archive into a frame-hash index"),
    "match": ("pipelines.match", "match posted images against an index"),
    "stream": ("pipelines.stream", "match images as they land, against a growing index"),
    "check": ("pipelines.commands.check",
              "reconcile a match output or an index: every input once"),
    "takedown": ("pipelines.commands.index_admin:takedown",
                 "tombstone a video (takedown request)"),
    "compact-index": ("pipelines.commands.index_admin:compact",
                      "merge an index's live partitions"),
    "rollback": ("pipelines.commands.index_admin:rollback",
                 "make an earlier index version live again"),
    "hash": ("pipelines.commands.hash", "print PDQ / vPDQ hashes of images and videos"),
    "import": ("pipelines.commands.import_hashes",
               "add a received PDQ / vPDQ / CSV hash list to an index"),
    "export": ("pipelines.commands.export_hashes",
               "write an index's PDQ out as vPDQ / PDQ / CSV lists"),
    "sql": ("pipelines.commands.sql", "DuckDB views over every run's results, analyst queries"),
    "report": ("pipelines.commands.report",
               "one static HTML page: posted images beside their frames"),
    "verdict": ("pipelines.commands.verdict",
                "record an analyst's confirmed/rejected on a match"),
    "purge": ("pipelines.commands.purge", "remove a posted image from every results table"),
    "eval": ("pipelines.commands.evaluate",
             "recall and false positives on edited queries, vs baselines"),
    "demo": ("pipelines.commands.demo",
             "the story: index bundled footage, trace edited screengrabs"),
}

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = 0, 1, 3
SPIKE = 0.5  # dead letters over this fraction of the inputs get a warning


def outcome(record: RunRecord | None) -> int:
    """A finished run's exit code, after its summary line and any warnings (a dry run,
    which has no record, is a success)."""
    if record is None:
        return 0
    if record.job == "index":
        produced = (record.n_videos or 0) + (record.n_unchanged or 0)
    else:
        produced = (record.n_matched or 0) + (record.n_no_match or 0)
    inputs, dead = record.n_inputs, record.n_dead_letters
    warnings = []
    if inputs and dead > SPIKE * inputs:
        warnings.append(f"dead letters spiked: {dead} of {inputs} inputs")
    if inputs and not produced:
        warnings.append(f"no output from {inputs} inputs")
    reconciles = produced + dead == inputs
    if not reconciles:
        warnings.append(f"counts do not reconcile: {inputs} in, {produced} out + {dead} dead")
    for warning in warnings:
        print(f"framematch {record.job}: WARNING: {warning}", file=sys.stderr)
    failed = not reconciles or (inputs and not produced)
    status = EXIT_FAILED if failed else EXIT_PARTIAL if dead else EXIT_OK
    word = {EXIT_OK: "success", EXIT_PARTIAL: "partial success", EXIT_FAILED: "failure"}[status]
    print(f"framematch {record.job} {record.run_id}: {word} (exit {status}): {inputs} inputs, "
          f"{produced} answered, {dead} dead letters")
    return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: framematch COMMAND [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<14} {help_text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, _, function = COMMANDS[argv[0]][0].partition(":")
    module = importlib.import_module(module_name)
    if not function and hasattr(module, "execute"):  # batch jobs: judged by their run record
        return outcome(module.execute(argv[1:])[1])
    status = getattr(module, function or "run")(argv[1:])
    return status if isinstance(status, int) else 0


def entry() -> None:
    """The ``framematch`` executable: ``main``, then exit with its status, which no signal
    can change any more. A command that has finished (a stream that drained, compacted
    and printed its last line) still takes the interpreter a few seconds to exit (Beam's
    exit handler stops Prism, gRPC threads wind down), and Python restores the default
    SIGINT/SIGTERM action while it shuts down, so a Ctrl-C or a scheduler's SIGTERM landing
    then killed a successful run with status -2 (seen in the streaming test under load).
    Ignoring both once ``main`` returned makes the exit status the command's own."""
    status = main()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # an ignored signal stays ignored at shutdown
    sys.exit(status)


if __name__ == "__main__":
    entry()
