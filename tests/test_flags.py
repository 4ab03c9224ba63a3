"""A mistyped flag is a usage error (exit 2) with Beam's "did you mean" suggestion, for every
``framematch`` command: a nightly job with ``--treshold 5`` must not run to the end with the
default threshold."""

from __future__ import annotations

import pytest

from pipelines.cli import COMMANDS, main
from pipelines.options import EXIT_USAGE

# (command, a typo near one of its own flags, the flag it suggests)
TYPOS = {
    "index": ("--archve", "--archive"),
    "match": ("--treshold", "--threshold"),
    "stream": ("--window_sec", "--window_s"),
    "check": ("--no_relst", "--no_relist"),
    "takedown": ("--reasn", "--reason"),
    "compact-index": ("--retain_hour", "--retain_hours"),
    "rollback": ("--too", "--to"),
    "hash": ("--formatt", "--format"),
    "import": ("--lable", "--label"),
    "export": ("--formatt", "--format"),
    "sql": ("--querry", "--query"),
    "report": ("--blurr", "--blur"),
    "verdict": ("--verdikt", "--verdict"),
    "purge": ("--querry", "--query"),
    "eval": ("--calibrat", "--calibrate"),
    "demo": ("--wrk", "--work"),
}


def test_every_command_is_covered():
    assert set(TYPOS) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(TYPOS))
def test_a_mistyped_flag_is_refused_with_a_suggestion(command: str, tmp_path,
                                                       capsys: pytest.CaptureFixture):
    typo, meant = TYPOS[command]
    with pytest.raises(SystemExit) as refused:
        main([command, typo, "5", "--index", str(tmp_path / "nowhere")])
    assert refused.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"unknown flag {typo}" in err and f"Did you mean '{meant}'?" in err, err


def test_beam_flags_and_the_jobs_own_pass(tmp_path):
    """Beam's runner flags are known; another job's flag is not this job's."""
    from pipelines.index import IndexOptions
    from pipelines.match import MatchOptions
    from pipelines.options import CommonOptions, unknown_flags

    argv = ["--archive", "a", "--runner=FnApiRunner", "--temp_location", "gs://b/t",
            "--setup_file", "./setup.py", "--dry_run=True", "--workers", "2"]
    assert unknown_flags(argv, [CommonOptions, IndexOptions]) == []
    assert unknown_flags(["--threshold", "5"], [CommonOptions, IndexOptions]) == [
        "unknown flag --threshold"]
    assert unknown_flags(["--threshold", "5"], [CommonOptions, MatchOptions]) == []
