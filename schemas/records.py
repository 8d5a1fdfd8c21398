"""Builders for the records parcours itself publishes, shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a message came from: dead letters and resolved records carry it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def dead_letter_record(
    stage: str, reason: str, payload: bytes, source: Source | None = None, line: int | None = None
) -> dict[str, Any]:
    return {
        "stage": stage,
        "reason": reason,
        "payload": payload,
        "topic": source.topic if source else None,
        "partition": source.partition if source else None,
        "offset": source.offset if source else None,
        "line": line,
        "received_at": datetime.now(UTC),
    }


def marker_record(
    run_id: str,
    source_partition: int,
    source_partitions: int,
    watermark: datetime | None,
    *,
    begins: bool = False,
) -> dict[str, Any]:
    """The end of a replay on one partition (``begins``: its start, so no input counts as idle
    while it runs)."""
    return {
        "begins": begins,
        "run_id": run_id,
        "stage": "producer",
        "source_partition": source_partition,
        "source_partitions": source_partitions,
        "watermark": watermark,
    }
