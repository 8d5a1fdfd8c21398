"""A broker quirk the workers must not trust: Tansu's end offsets.

Tansu answers ``ListOffsets(latest)`` with the base offset of a partition's last record batch plus
one, not with the offset after its last record: after one batch of ten records it reports 1.
faust restores a table by reading its changelog up to that end offset, so a worker that takes a
partition over would miss the last owner's final writes but one — and the input offsets those
writes belong to are already committed: the events would be lost. The end offsets are therefore
checked by reading the last batch (on a Kafka that reports them right this finds the same value).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

Highwaters = Callable[[Any, list[TP]], Awaitable[Mapping[TP, int]]]


async def true_ends(bootstrap: str, reported: Mapping[TP, int]) -> dict[TP, int]:
    """The offset after each partition's last record, from ``reported`` (the broker's answer)."""
    ends = dict(reported)
    probe = [tp for tp, end in reported.items() if end]
    if not probe:
        return ends
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        parts = [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in probe]
        consumer.assign(parts)
        for part, tp in zip(parts, probe, strict=True):
            consumer.seek(part, ends[tp] - 1)
        waiting = set(parts)
        for _ in range(20):
            if not waiting:
                break
            batches = await consumer.getmany(*waiting, timeout_ms=200)
            for part, records in batches.items():
                tp = TP(part.topic, part.partition)
                ends[tp] = max(ends[tp], records[-1].offset + 1)
                waiting.discard(part)
    finally:
        await consumer.stop()
    return ends


def trust_no_end_offsets(bootstrap: str) -> None:
    """Make faust's consumers check every end offset the broker reports (idempotent)."""
    original: Highwaters = AIOKafkaConsumerThread._highwaters
    if getattr(original, "checked", False):
        return

    async def checked(self: Any, partitions: list[TP]) -> Mapping[TP, int]:
        return await true_ends(bootstrap, await original(self, partitions))

    checked.checked = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._highwaters = checked  # type: ignore[method-assign]
