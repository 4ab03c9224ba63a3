"""Listing inputs through Beam's ``FileSystems``: the first step of every batch job."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io import fileio


class ListFiles(beam.PTransform):
    """Every file matching the patterns, as ``FileMetadata`` (path, size, update time)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = patterns

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
        )
