"""Options every job shares, and how the embedded runner is chosen.

With no ``--runner`` the jobs run on Beam's ``FnApiRunner``: the engine the DirectRunner
itself uses for batch pipelines, named explicitly so that nothing tries to download the
Prism runner first (the DirectRunner of Beam >= 2.68 does, and waits on the network).
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import logging
import secrets
import sys
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
    _BeamArgumentParser,
)

from transforms.io import gcs_auth

DEFAULT_RUNNER = "FnApiRunner"


class CommonOptions(PipelineOptions):
    """Flags every job shares. Beam parses all option classes with one parser, so a flag
    is defined once, here, and each job reads it through its own view."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--index", help="Index directory (local or gs://).")
        parser.add_argument(
            "--meta", default=None,
            help="CSV/JSONL sidecar keyed by uri (or file name): video metadata for index "
                 "(title, source_url, published, rights), post metadata for match "
                 "(post_url, platform, posted_at, case_id).")
        parser.add_argument(
            "--workers", type=int, default=None,
            help="Run the embedded runner with this many worker processes (default: 1).")
        parser.add_argument("--verbose", action="store_true", help="Log at INFO level.")


EXIT_USAGE = 2


def did_you_mean(flag: str, known: Sequence[str]) -> str:
    """Beam's suggestion for an unparseable flag (``PipelineOptions._warn_on_unknown_options``:
    ``difflib.get_close_matches`` over the known option strings), as a phrase."""
    close = difflib.get_close_matches(flag.split("=", 1)[0], list(known))
    return f". Did you mean '{close[0]}'?" if close else ""


def unknown_flags(argv: Sequence[str], own: Sequence[type[PipelineOptions]],
                  also_known: Sequence[str] = ()) -> list[str]:
    """Messages for the arguments that neither ``own`` option classes nor Beam's know.

    Beam parses ``argv`` with every PipelineOptions subclass imported in the process and
    only logs what it cannot parse ("Unparseable argument ... Did you mean"), so a job with
    ``--treshold 5`` would run to the end with the default threshold. This parses ``argv``
    with Beam's own option classes plus the job's (not other jobs' flags that happen to be
    imported), the way Beam does (no abbreviations). ``also_known``: flags of a command
    that hands the rest of its arguments to the jobs (``demo``, ``eval``), for suggestions.
    """
    parser = _BeamArgumentParser(allow_abbrev=False)
    beams = [c for c in PipelineOptions.__subclasses__()
             if c.__module__.startswith("apache_beam.")]
    for cls in {str(c): c for c in [*beams, *own]}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(argv))
    known = [o for action in parser._actions for o in action.option_strings] + list(also_known)
    problems, after_flag = [], False
    for arg in unknown:
        if arg.startswith("-"):
            problems.append(f"unknown flag {arg.split('=', 1)[0]}{did_you_mean(arg, known)}")
            after_flag = "=" not in arg
        elif not after_flag:
            problems.append(f"unexpected argument {arg!r}")
        else:
            after_flag = False  # the value of the unknown flag before it
    return problems


def refuse_unknown_flags(job: str, argv: Sequence[str], own: Sequence[type[PipelineOptions]],
                         also_known: Sequence[str] = ()) -> None:
    """Exit 2 (usage error) naming each flag the job and Beam do not know."""
    problems = unknown_flags(argv, own, also_known)
    if problems:
        for problem in problems:
            print(f"framematch {job}: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class CommandParser(argparse.ArgumentParser):
    """The argument parser of the commands that are not Beam jobs: flags are spelled in
    full (as Beam's are), and an unknown one is a usage error (exit 2) with the same
    "did you mean" suggestion Beam gives."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        """Unknown flags are reported first, before missing required ones: the typo is
        usually why a required flag looks missing."""
        args = list(sys.argv[1:] if args is None else args)
        unknown = [a for a in args if a.startswith("--") and a != "--"
                   and a.split("=", 1)[0] not in self._option_string_actions]
        if unknown:
            self.error("unrecognized arguments: " + " ".join(unknown))
        return super().parse_args(args, namespace)

    def error(self, message: str):
        if message.startswith("unrecognized arguments: "):
            words = message.removeprefix("unrecognized arguments: ").split()
            message = "; ".join(
                f"unknown flag {w}{did_you_mean(w, list(self._option_string_actions))}"
                if w.startswith("-") else f"unexpected argument {w!r}" for w in words)
        super().error(message)


def beam_options(argv: list[str], job: str | None = None,
                 own: Sequence[type[PipelineOptions]] = ()) -> PipelineOptions:
    """PipelineOptions from the command line, with the embedded runner as the default.

    For a ``job``, flags that neither ``own`` (its option classes; ``CommonOptions`` is
    added) nor Beam knows are refused (exit 2). Under a Cloud Storage emulator
    (``STORAGE_EMULATOR_HOST``), Beam's GCS clients of this process are made anonymous
    first (``transforms.io.gcs_auth``).
    """
    if job is not None:
        refuse_unknown_flags(job, argv, [CommonOptions, *own])
    gcs_auth.use_anonymous_credentials_for_emulator()
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_RUNNER
    workers = options.view_as(CommonOptions).workers
    if workers and workers > 1:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = workers
        direct.direct_running_mode = "multi_processing"
    return options


def is_dry_run(options: PipelineOptions) -> bool:
    """Dataflow's ``--dry_run``: the job is built, not run, so there is nothing to read back.

    A string option: any value, ``False`` included, means a dry run (Beam's own semantics)."""
    return bool(options.view_as(TestOptions).dry_run)  # default False; "False" is truthy


def new_run_id(now: datetime.datetime | None = None) -> str:
    """Sortable by time, unique across concurrent runs: 20261126T001700Z-3f9a."""
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def configure_logging(verbose: bool = False) -> None:
    """Warnings and up, plus a progress line per decoded segment; everything with --verbose."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("framematch.progress").setLevel(logging.INFO)
