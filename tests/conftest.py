"""Fixtures built once per test session: the real-footage archive and its index.

The archive is cached across sessions (``.cache/footage``, rebuilt when its recipe
changes); the index is rebuilt every session, by whichever pytest-xdist worker gets there
first, into a directory all workers share, so the index code under test is always fresh.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_GCE_CHECK", "True")

from evaluation.footage import ensure_archive  # noqa: E402
from pipelines import index  # noqa: E402
from tests.gcs_emulator import gcs_bucket  # noqa: E402, F401
from transforms.index.store import live_frames, live_videos, load_manifest  # noqa: E402

EMBEDDED = ["--runner=FnApiRunner"]


@pytest.fixture(scope="session")
def archive() -> list[Path]:
    return ensure_archive(profile="test")


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by all xdist workers of this session."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return root / "shared"


def build_once(directory: Path, build) -> None:
    """Run ``build(directory)`` once per session across workers; others wait for it."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{directory}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / ".done").exists():
            build(directory)
            (directory / ".done").write_text("ok")


@pytest.fixture(scope="session")
def archive_list(archive: list[Path], shared_dir: Path) -> Path:
    """A list file naming the archive's videos (its folder also holds truth JSON)."""
    path = shared_dir / "archive.txt"
    shared_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{v}\n" for v in archive))
    return path


@pytest.fixture(scope="session")
def index_dir(archive_list: Path, shared_dir: Path) -> Path:
    """The test archive indexed with the default settings (the match tests' reference)."""
    directory = shared_dir / "index"
    build_once(directory, lambda d: index.run(
        ["--archive", str(archive_list), "--index", str(d), *EMBEDDED]))
    return directory


def live_index(idx: Path) -> tuple[list[tuple[str, str]], list[tuple]]:
    """An index's live videos as sorted (uri, sha256) and its frame rows as sorted
    (uri, ts_start, region, key): what two indexes must share to hold the same rows."""
    manifest = load_manifest(str(idx))
    videos = live_videos(str(idx), manifest)
    uri_of = dict(zip(videos.column("video_id").to_pylist(), videos.column("uri").to_pylist(),
                      strict=True))
    frames = live_frames(str(idx), manifest, videos)
    rows = sorted(zip((uri_of[v] for v in frames.column("video_id").to_pylist()),
                      *(frames.column(c).to_pylist() for c in ("ts_start", "region", "key")),
                      strict=True))
    return sorted(zip(videos.column("uri").to_pylist(), videos.column("sha256").to_pylist(),
                      strict=True)), rows
