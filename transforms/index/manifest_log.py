"""The manifest log: every version of an index's manifest, each created once, the newest live.

    INDEX/_manifests/00000000000000000001.json, 00000000000000000002.json, ...

Why a log and not one ``manifest.json`` rewritten in place: every writer (``index``,
``import``, ``takedown``, ``compact-index``, ``rollback``) reads the manifest, adds to it and
writes it back, so two at once lost one of the two batches. Here a commit is a
compare-and-swap: the writer read version *n*, and creates version *n + 1* exclusively
(``storage.create_exclusive``: a hard link locally, ``if_generation_match=0`` on Cloud
Storage). Exactly one writer gets *n + 1*; the other re-reads the newest version and applies
its change to it again (``commit``), or refuses when that is no longer safe
(``CommitConflict``), leaving the index as the winner made it and its own batch
unreferenced. Readers take the newest version; a version is never rewritten, so a reader
never sees half of one, and older versions are the history that ``rollback`` and readers
that are still running (a stream, a long match job) rely on until ``vacuum`` removes what
no retained version references.

Measured before choosing this over Delta Lake (``deltalake``, delta-rs): delta-rs commits
concurrent local appends safely, but its GCS client could not be run against either local
emulator (it lists with the XML API, which gcp-storage-emulator lacks, and fake-gcs-server
refused its uploads), so a Delta table on ``gs://`` would ship untested; this protocol is
tested against fake-gcs-server, which enforces preconditions (docs/operations.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import re
import time
from collections.abc import Callable

from apache_beam.io.filesystems import FileSystems

from schemas.manifest import MANIFEST_LOG, MANIFEST_NAME, Manifest
from transforms.io import storage

LOG = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 20  # a writer that loses this often to others gives up (and says so)
_VERSION_FILE = re.compile(r"(\d{20})\.json")


class CommitConflict(RuntimeError):
    """The index changed under this writer in a way its change cannot be re-applied to;
    nothing was committed."""


def log_dir(index_dir: str) -> str:
    return f"{index_dir.rstrip('/')}/{MANIFEST_LOG}"


def version_uri(index_dir: str, version: int) -> str:
    if version == 0:
        return f"{index_dir.rstrip('/')}/{MANIFEST_NAME}"
    return f"{log_dir(index_dir)}/{version:020d}.json"


def versions(index_dir: str) -> list[int]:
    """The versions in the log, oldest first (empty: no log yet)."""
    return sorted(int(m.group(1)) for name in storage.list_names(log_dir(index_dir))
                  if (m := _VERSION_FILE.fullmatch(name)))


def read_version(index_dir: str, version: int) -> Manifest:
    manifest = Manifest.from_json(storage.read_small(version_uri(index_dir, version)))
    manifest.log_version = version
    return manifest


def head(index_dir: str) -> Manifest | None:
    """The live manifest: the newest version of the log, else a legacy ``manifest.json``
    (version 0), else None (no index here)."""
    for _ in range(3):  # the newest may be vacuumed between listing and reading: list again
        found = versions(index_dir)
        if not found:
            break
        try:
            return read_version(index_dir, found[-1])
        except FileNotFoundError:
            continue
    try:
        return read_version(index_dir, 0)
    except FileNotFoundError:
        return None


def commit(index_dir: str, base: Manifest, change: Callable[[Manifest], Manifest],
           operation: str) -> Manifest:
    """Commit ``change(current)`` as the version after ``current``, starting from ``base``.

    ``change`` gets the newest manifest (first ``base``, then, after each lost race, the
    version that won) and returns the next one, or raises ``CommitConflict`` to refuse.
    Returns the committed manifest.
    """
    current = base
    for attempt in range(COMMIT_ATTEMPTS):
        proposed = dataclasses.replace(
            change(current), log_version=current.log_version + 1, operation=operation,
            committed=datetime.datetime.now(datetime.UTC).isoformat())
        if storage.create_exclusive(version_uri(index_dir, proposed.log_version),
                                    proposed.to_json()):
            return proposed
        LOG.warning("manifest version %d was committed by another writer: re-applying %s",
                    proposed.log_version, operation)
        time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # spread competing writers
        current = head(index_dir) or base
    raise CommitConflict(f"{COMMIT_ATTEMPTS} other commits won the race for {index_dir}; "
                         f"nothing was committed")


def retained(index_dir: str, retain: datetime.timedelta,
             now: datetime.datetime | None = None) -> list[Manifest]:
    """The versions readers may still hold: the live one, every version committed within
    ``retain``, and legacy files (``manifest.json``, rollback's ``manifest-*.json``)."""
    now = now or datetime.datetime.now(datetime.UTC)
    found = versions(index_dir)
    kept = []
    for version in found:
        manifest = read_version(index_dir, version)
        committed = datetime.datetime.fromisoformat(manifest.committed) if manifest.committed \
            else now
        if version == found[-1] or now - committed <= retain:
            kept.append(manifest)
    legacy = [version_uri(index_dir, 0)] + [m.path for m in FileSystems.match(
        [f"{index_dir.rstrip('/')}/manifest-*.json"])[0].metadata_list]
    kept += [Manifest.from_json(storage.read_text(uri)) for uri in legacy
             if storage.exists(uri)]
    return kept


def expired_versions(index_dir: str, retain: datetime.timedelta,
                     now: datetime.datetime | None = None) -> list[str]:
    """URIs of log versions older than ``retain`` (never the live one)."""
    keep = {m.log_version for m in retained(index_dir, retain, now)}
    return [version_uri(index_dir, v) for v in versions(index_dir) if v not in keep]
