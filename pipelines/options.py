"""Options every job shares, and how the embedded runner is chosen.

With no ``--runner`` the jobs run on Beam's ``FnApiRunner``: the engine the DirectRunner
itself uses for batch pipelines, named explicitly so that nothing tries to download the
Prism runner first (the DirectRunner of Beam >= 2.68 does, and waits on the network).
"""

from __future__ import annotations

import datetime
import logging
import secrets

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
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


def beam_options(argv: list[str]) -> PipelineOptions:
    """PipelineOptions from the command line, with the embedded runner as the default.

    Under a Cloud Storage emulator (``STORAGE_EMULATOR_HOST``), Beam's GCS clients of this
    process are made anonymous first (``transforms.io.gcs_auth``).
    """
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
