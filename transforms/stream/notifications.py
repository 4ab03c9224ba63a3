"""New-object events for the streaming job: GCS Pub/Sub notifications, deduplicated.

Cloud Storage publishes one message per object event, with the facts in the message
attributes (``bucketId``, ``objectId``, ``objectGeneration``, ``eventType``). Only
``OBJECT_FINALIZE`` means "a new object (or a new generation of one) is readable"; metadata
updates, deletes and archivals are dropped. Pub/Sub delivers at least once, so the same
finalize can arrive twice: ``FirstSeen`` lets through the first element per key and forgets
the key once the watermark has passed the element's time plus ``ttl``, so its state holds
only the keys of the last ``ttl`` of event time instead of every object ever seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

FINALIZE = "OBJECT_FINALIZE"


def finalized_object(attributes: Mapping[str, str]) -> tuple[str, str] | None:
    """``(gs://bucket/object, generation)`` of a finalize notification; None otherwise.

    A notification without the object's name or generation cannot be deduplicated or read,
    so it counts as not a finalize.
    """
    if attributes.get("eventType") != FINALIZE:
        return None
    bucket, name = attributes.get("bucketId"), attributes.get("objectId")
    generation = attributes.get("objectGeneration")
    if not (bucket and name and generation):
        return None
    return f"gs://{bucket}/{name}", generation


class FirstSeen(beam.DoFn):
    """``(key, value)`` → ``value``, once per key for ``ttl`` seconds of event time.

    Runs in the global window (state per key and window: in fixed windows a duplicate in the
    next window would pass). The expiry is an event-time timer, so a replay or a test with
    ``TestStream`` forgets keys exactly as a live stream does. A duplicate delivered more than
    ``ttl`` after the first copy is taken as new: pick ``ttl`` above the source's redelivery
    horizon (Pub/Sub redelivers unacknowledged messages for up to its retention).
    """

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, ttl_s: float):
        self.ttl = Duration.of(ttl_s)
        self.duplicates = Metrics.counter("stream", "duplicates_dropped")

    def process(self, element: tuple[Any, Any], timestamp=beam.DoFn.TimestampParam,
                seen=beam.DoFn.StateParam(SEEN),
                expiry=beam.DoFn.TimerParam(EXPIRY)) -> Iterator[Any]:
        if seen.read():
            self.duplicates.inc()
            return
        seen.write(True)
        expiry.set(Timestamp.of(timestamp) + self.ttl)
        yield element[1]

    @on_timer(EXPIRY)
    def forget(self, seen=beam.DoFn.StateParam(SEEN)) -> None:
        seen.clear()


class FinalizedObjects(beam.PTransform):
    """Pub/Sub messages of GCS notifications → ``gs://`` URIs, once per (name, generation)."""

    def __init__(self, ttl_s: float):
        super().__init__()
        self.ttl_s = ttl_s

    def expand(self, messages):
        return (
            messages
            | "Finalized" >> beam.FlatMap(_keyed_finalize)
            | "OncePerGeneration" >> beam.ParDo(FirstSeen(self.ttl_s))
        )


def _keyed_finalize(message) -> Iterator[tuple[tuple[str, str], str]]:
    found = finalized_object(message.attributes or {})
    if found is not None:
        yield found, found[0]
