"""Listing inputs through Beam's ``FileSystems``: the first step of every batch job; and
the sidecar of metadata read beside them (``ReadSidecar``)."""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.io import storage


class EmptyListing(ValueError):
    """A pattern listed nothing, or could not be listed: a typo, an unmounted share, an
    empty or unreadable prefix. To an index run that is not "an empty archive"."""


def require_files(patterns: Sequence[str]) -> None:
    """Raise ``EmptyListing`` naming each pattern that matches no file (or cannot be read).

    Asks for one match per pattern (``limits``), so a prefix of millions of objects costs
    one listing page here; the pipeline lists them in full.
    """
    problems = []
    for pattern in patterns:
        try:
            found = FileSystems.match([pattern], limits=[1])[0].metadata_list
        except Exception as error:  # noqa: BLE001 - Beam wraps each file system's errors
            problems.append(f"{pattern} cannot be listed ({error})")
            continue
        if not found:
            problems.append(f"{pattern} matches no file")
    if problems:
        raise EmptyListing("; ".join(problems))


class ListFiles(beam.PTransform):
    """Every file matching the patterns, as ``FileMetadata`` (path, size, update time).

    With ``allow_empty=False`` a pattern that matches nothing fails the job (Beam's
    ``EmptyMatchTreatment.DISALLOW``), where a run must not mistake it for "nothing there".
    """

    def __init__(self, patterns: list[str], allow_empty: bool = True):
        super().__init__()
        self.patterns = patterns
        self.allow_empty = allow_empty

    def expand(self, pbegin):
        treatment = (fileio.EmptyMatchTreatment.ALLOW if self.allow_empty
                     else fileio.EmptyMatchTreatment.DISALLOW)
        return (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Match" >> fileio.MatchAll(treatment)
        )


class CountInputs(beam.DoFn):
    """Counts what enters a job where it enters (a Beam counter), passing it on unchanged:
    the count a run reconciles its outputs against, independent of what came out."""

    def __init__(self, namespace: str, name: str):
        self.namespace = namespace
        self.name = name

    def setup(self) -> None:
        self.counter = Metrics.counter(self.namespace, self.name)

    def process(self, element):
        self.counter.inc()
        yield element


class ReadSidecar(beam.PTransform):
    """A CSV/JSONL sidecar (``--meta``) → ``(key value, row)``, read inside the pipeline.

    Its rows reach the steps that need them as a multimap side input, looked up by key
    (``storage.sidecar_lookup``): a dict of every row pickled into the steps instead made
    the job graph grow with the sidecar (Dataflow refuses graphs past its size limit).
    The file is read whole by one worker (a CSV row may span lines); nothing when no
    sidecar is given.
    """

    def __init__(self, uri: str | None, key: str = "uri"):
        super().__init__()
        self.uri = uri
        self.key = key

    def expand(self, pbegin):
        key = self.key
        return (
            pbegin
            | "Sidecar" >> beam.Create([self.uri] if self.uri else [])
            | "Rows" >> beam.FlatMap(lambda uri: storage.sidecar_rows(
                storage.read_text(uri), uri, key))
        )
