"""Where a worker's consumer resumes a partition after faust has dropped what it fetched (a
rebalance, table recovery): at the committed offset, or at the first message if there is none."""

from __future__ import annotations

import asyncio
import uuid

import aiokafka
import pytest
from confluent_kafka import Producer
from parcours.deploy.stack import Stack, create_topics
from parcours.schemas import topics
from parcours.schemas.kafka import producer_config
from parcours.streams.app import Committed, rewind_uncommitted

pytestmark = pytest.mark.integration

MESSAGES = 10


async def _offsets(consumer: aiokafka.AIOKafkaConsumer, tp: aiokafka.TopicPartition) -> list[int]:
    """The offsets the consumer reads from ``tp`` from where it is, up to MESSAGES of them."""
    offsets: list[int] = []
    for _ in range(20):
        batches = await consumer.getmany(tp, timeout_ms=250)
        offsets += [record.offset for record in batches.get(tp, [])]
        if len(offsets) >= MESSAGES:
            break
    return offsets


def test_a_partition_nobody_committed_is_read_again_from_its_first_message(stack: Stack) -> None:
    """What a dead worker's partition went through when it was taken over before its first
    commit: the survivor fetched its messages while faust's flow was stopped, faust dropped them
    and sought back to the committed offsets, and the partition stayed past them."""
    settings = stack.settings.model_copy(update={"topic_prefix": f"rw{uuid.uuid4().hex[:6]}."})
    create_topics(settings)
    stream, changelog = settings.topic(topics.RESOLVED), settings.topic(topics.IDENTITY)
    producer = Producer(producer_config(settings))
    for topic in (stream, changelog):
        for n in range(MESSAGES):
            producer.produce(topic, b"%d" % n, b"k", 1)
    assert producer.flush(10) == 0

    async def fetch_drop_and_seek() -> tuple[Committed, list[int], list[int]]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"rw-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            parts = [aiokafka.TopicPartition(topic, 1) for topic in (stream, changelog)]
            consumer.assign(parts)
            fetched = [await _offsets(consumer, part) for part in parts]
            assert fetched == [list(range(MESSAGES))] * 2, "both read to the end, then dropped"
            seek = rewind_uncommitted(
                consumer.seek_to_committed,
                consumer.seek_to_beginning,
                lambda topic: topic == changelog,  # it stands for a table's changelog here
            )
            committed = await seek()
            return committed, await _offsets(consumer, parts[0]), await _offsets(consumer, parts[1])
        finally:
            await consumer.stop()

    committed, stream_again, changelog_again = asyncio.run(fetch_drop_and_seek())

    assert set(committed.values()) == {None}  # nothing committed: aiokafka would not move
    assert stream_again == list(range(MESSAGES))
    assert changelog_again == [], "a changelog partition stays where table recovery put it"
