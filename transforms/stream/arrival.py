"""Event time for the streaming job: when an input reached framematch, so none is late.

A window's rows are grouped by a ``GroupByKey``, which drops elements whose window closed
(past the watermark plus the allowed lateness) without a trace. A file's own time (its
mtime, a message's publish time) can be far behind the watermark: a file moved in with an
old mtime, an object uploaded long after it was written, a Pub/Sub backlog. So the job
re-stamps each input with the time it arrived (never earlier than its own time): a
timestamp at or after the element's own is at or after the watermark, so no window it
lands in has closed, and every input reaches the output or the dead letter.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

BEHIND_S = 60.0  # an input this far behind the clock is counted (it would have been late)


class StampArrival(beam.DoFn):
    """element → the element at ``max(its timestamp, now)``; counts those that were behind."""

    def __init__(self) -> None:
        self.behind = Metrics.counter("stream", "inputs_behind_the_clock")

    def process(self, element, timestamp=beam.DoFn.TimestampParam) -> Iterator:
        now = Timestamp.now()
        if now - timestamp > BEHIND_S:
            self.behind.inc()
        yield TimestampedValue(element, max(now, timestamp))
