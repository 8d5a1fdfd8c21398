"""The ingest step of the worker, pure: raw bytes from ``touchpoints`` → a resolved record,
a dead letter, or an end-of-run marker to fan out. No Kafka in here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from parcours.schemas.codec import Codec
from parcours.schemas.errors import SchemaError, ValidationError
from parcours.schemas.records import Source, dead_letter_record
from parcours.schemas.sdk import Guard, Touchpoint


@dataclass(frozen=True)
class Forward:
    key: bytes
    value: bytes
    occurred_at: int
    """Event time (epoch ms): the ingest task's watermark follows it."""


@dataclass(frozen=True)
class DeadLetter:
    value: bytes
    reason: str


@dataclass(frozen=True)
class EndOfRun:
    marker: dict[str, Any]


Outcome = Forward | DeadLetter | EndOfRun


class Ingest:
    """Decode and validate one message from ``touchpoints``; with a ``guard``, apply its PII
    policy too, for producers that write to the topic without the SDK."""

    def __init__(self, codec: Codec, guard: Guard | None = None) -> None:
        self.codec = codec
        self.guard = guard

    def process(self, value: bytes | None, source: Source, where: str = "") -> Outcome:
        """``where``: the record's place in its frame (``"item 3: "``), for a dead letter's reason."""
        if not value:
            return self._dead(b"", f"{where}empty message", source)
        try:
            name, record = self.codec.decode(value)
            if name.endswith(".Marker"):
                return EndOfRun(record)
            if not name.endswith(".Touchpoint"):
                raise SchemaError(f"a {name} record does not belong on {source.topic}")
            touchpoint = Touchpoint.from_avro(record)
        except (SchemaError, ValidationError) as exc:
            return self._dead(value, f"{where}{exc}", source)
        if self.guard is not None:
            try:
                guarded = self.guard.apply(touchpoint)
            except ValidationError as exc:
                # The dead letter keeps the event, redacted: the original bytes hold the PII.
                redacted = replace(self.guard, pii_policy="redact").apply(touchpoint)
                return self._dead(
                    self.codec.encode("Touchpoint", redacted.to_avro()), f"{where}{exc}", source
                )
            if guarded is not touchpoint:
                touchpoint, record = guarded, guarded.to_avro()
        resolved = {
            # The decoded record already fits the schema and passed validation: no re-dump.
            "touchpoint": record,
            "profile_id": None,
            "journey_id": None,
            "routing_key": touchpoint.routing_key,
            "produced_at": source.timestamp_ms,
            "source_partition": source.partition,
            "source_offset": source.offset,
        }
        key = touchpoint.routing_key.encode()
        occurred_at = int(touchpoint.occurred_at.timestamp() * 1000)
        return Forward(key, self.codec.encode_internal("ResolvedTouchpoint", resolved), occurred_at)

    def _dead(self, value: bytes, reason: str, source: Source) -> DeadLetter:
        record = dead_letter_record("worker", reason, value, source)
        return DeadLetter(self.codec.encode("DeadLetter", record), reason)

    def worker_marker(self, marker: dict[str, Any], source: Source) -> dict[str, Any]:
        """The marker this worker forwards downstream once it has passed ``source.partition``."""
        return dict(marker, stage="ingest", source_partition=source.partition)
