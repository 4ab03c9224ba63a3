"""A run indexes what it lists, and never deletes by omission: a new subfolder indexed alone
keeps everything else, a typo or an empty folder is an error, and ``--delete_missing``
tombstones only files gone from under what this run listed, up to ``--max_delete_fraction``
of the live videos (beyond it the run is refused, and nothing changes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.cli import EXIT_OK, main
from pipelines.commands import check
from tests.conftest import EMBEDDED, live_index
from transforms.index import manifest_log
from transforms.index.store import load_manifest


@pytest.fixture()
def tree(archive: list[Path], tmp_path: Path) -> dict:
    """archive/2025/{a,b}.mp4 and archive/2026-11/c.mp4 (the short carphone clip), indexed."""
    clip = next(v for v in archive if v.stem == "carphone")
    root = tmp_path / "archive"
    for name in ("2025/a.mp4", "2025/b.mp4", "2026-11/c.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, root / name)
    idx = tmp_path / "index"
    assert main(["index", "--archive", f"{root}/", "--index", str(idx), *EMBEDDED]) == EXIT_OK
    return {"root": root, "index": idx, "clip": clip}


def index_cmd(tree: dict, archive: str, *flags: str) -> list[str]:
    return ["index", "--archive", archive, "--index", str(tree["index"]), *flags, *EMBEDDED]


def live_uris(idx: Path) -> set[str]:
    return {uri for uri, _ in live_index(idx)[0]}


def files_of(idx: Path) -> set[str]:
    return {str(p.relative_to(idx)) for p in idx.rglob("*") if p.is_file()}


def test_index_a_new_subfolder_only(tree: dict):
    root, idx = tree["root"], tree["index"]
    before = live_uris(idx)
    shutil.copy(tree["clip"], root / "2026-11" / "d.mp4")
    assert main(index_cmd(tree, f"{root}/2026-11/")) == EXIT_OK
    assert live_uris(idx) == before | {str(root / "2026-11" / "d.mp4")}  # nothing lost
    assert load_manifest(str(idx)).partitions[-1].tombstones == 0
    assert check.run([str(idx)]) == 0


@pytest.mark.parametrize("where", ["typo", "empty folder", "empty glob"])
def test_an_empty_listing_is_an_error(tree: dict, where: str):
    root, idx = tree["root"], tree["index"]
    (root / "2027").mkdir()
    archive = {"typo": f"{root}/2026-1l/", "empty folder": f"{root}/2027/",
               "empty glob": f"{root}/2026-11/*.mkv"}[where]
    version, files = load_manifest(str(idx)).log_version, files_of(idx)
    with pytest.raises(SystemExit) as refused:
        main(index_cmd(tree, archive, "--delete_missing", "--max_delete_fraction", "1"))
    assert "matches no file" in str(refused.value.code) and "nothing was indexed" in str(
        refused.value.code)
    assert load_manifest(str(idx)).log_version == version and files_of(idx) == files


def test_delete_missing_only_under_what_was_listed(tree: dict):
    root, idx = tree["root"], tree["index"]
    b = root / "2025" / "b.mp4"
    b.unlink()
    everything = live_uris(idx)
    # b is gone, but not from under 2026-11/: even with --delete_missing it stays
    assert main(index_cmd(tree, f"{root}/2026-11/", "--delete_missing",
                          "--max_delete_fraction", "1")) == EXIT_OK
    assert live_uris(idx) == everything
    # without --delete_missing, listing 2025/ itself removes nothing either
    assert main(index_cmd(tree, f"{root}/2025/")) == EXIT_OK
    assert live_uris(idx) == everything
    # 1 of 3 live videos is past the default 10%: refused, named, nothing changed
    version, files = load_manifest(str(idx)).log_version, files_of(idx)
    with pytest.raises(SystemExit) as refused:
        main(index_cmd(tree, f"{root}/2025/", "--delete_missing"))
    message = str(refused.value.code)
    assert "refused" in message and "1 of 3" in message and str(b) in message
    assert load_manifest(str(idx)).log_version == version and files_of(idx) == files
    assert main(index_cmd(tree, f"{root}/2025/", "--delete_missing",
                          "--max_delete_fraction", "0.34")) == EXIT_OK
    assert live_uris(idx) == everything - {str(b)}
    assert check.run([str(idx)]) == 0


def test_received_hash_lists_and_takedowns_are_not_deleted_by_omission(tree: dict,
                                                                       tmp_path: Path):
    root, idx = tree["root"], tree["index"]
    hashes = tmp_path / "partner.txt"
    hashes.write_text("pdq " + "f" * 62 + "0a 100 partner-item\n")
    assert main(["import", "--hashes", str(hashes), "--index", str(idx)]) == 0
    a = str(root / "2025" / "a.mp4")
    assert main(["takedown", "--index", str(idx), "--uri", a]) == 0
    live = live_uris(idx)
    assert "partner-item" in live and a not in live
    assert main(index_cmd(tree, f"{root}/", "--delete_missing")) == EXIT_OK
    assert live_uris(idx) == live  # the import is kept, the taken-down file stays down
    assert [v for v in manifest_log.versions(str(idx))] == list(
        range(1, len(manifest_log.versions(str(idx))) + 1))
