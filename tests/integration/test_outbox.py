"""The worker's sends (records and table changes) against the real broker: a flush returns once
the broker holds every one of them, in the order sent; a record it refuses fails the flush."""

from __future__ import annotations

import asyncio
import uuid

import faust
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from parcours.deploy.stack import Stack, create_topics
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.errors import BrokerError
from parcours.schemas.frames import partition_of
from parcours.schemas.kafka import consumer_config
from parcours.streams.outbox import Outbox

pytestmark = pytest.mark.integration


def _outbox(stack: Stack) -> Outbox:
    settings = stack.settings.model_copy(update={"topic_prefix": f"ob{uuid.uuid4().hex[:6]}."})
    create_topics(settings)
    return Outbox(faust.App("outbox-test", broker="kafka://localhost"), settings, Codec())


def _values(outbox: Outbox, name: str, partition: int, count: int) -> list[bytes]:
    settings = outbox.settings
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(settings.topic(name), partition, OFFSET_BEGINNING)])
    try:
        messages = consumer.consume(count, timeout=10)
    finally:
        consumer.close()
    return [m.value() or b"" for m in messages if not m.error()]


def test_a_flush_returns_once_the_broker_holds_every_record_and_table_change(
    stack: Stack,
) -> None:
    outbox = _outbox(stack)
    stored: list[tuple[int, int]] = []
    changelog = outbox.settings.topic(topics.JOURNEYS)  # any topic stands for a changelog here

    async def send() -> None:
        for n in range(200):
            await outbox.to_partition(topics.PIVOTS, "Tick", {"task": n}, 2)
            outbox.to_changelog(changelog, 1, b"k", b"%d" % n, lambda p, o: stored.append((p, o)))
        await outbox.flush()

    asyncio.run(send())

    assert stored == [(1, offset) for offset in range(200)]  # every one acknowledged, in order
    ticks = [outbox.codec.decode(v)[1]["task"] for v in _values(outbox, topics.PIVOTS, 2, 200)]
    assert ticks == list(range(200))
    assert _values(outbox, topics.JOURNEYS, 1, 200) == [b"%d" % n for n in range(200)]


@pytest.mark.parametrize("known", [False, True], ids=["new-topic", "known-topic"])
def test_a_refused_record_fails_the_flush_with_its_topic(stack: Stack, known: bool) -> None:
    """Refused by the broker, or by librdkafka at once when its metadata already says the
    partition does not exist: either way the flush fails, naming the topic."""
    outbox = _outbox(stack)
    missing = outbox.settings.topic(topics.PIVOTS)

    async def send() -> None:
        if known:
            outbox.to_changelog(missing, 0, b"k", b"v", lambda p, o: None)
            await outbox.flush()
        outbox.to_changelog(missing, 99, b"k", b"v", lambda p, o: None)  # no partition 99
        await outbox.flush()

    with pytest.raises(BrokerError, match=missing):
        asyncio.run(send())


def test_a_mark_is_acknowledged_once_a_flush_after_it_succeeded_and_never_after_a_refusal(
    stack: Stack,
) -> None:
    """A record still waiting in its frame is not acknowledged; the flush that sends it is what
    acknowledges its mark. Once the broker refused a record, no mark is (its records are
    handled again)."""
    outbox = _outbox(stack)

    async def run() -> None:
        await outbox.send(topics.RESOLVED, "Tick", {"task": 1}, key="p")  # framed: waits
        mark = outbox.mark()
        assert not outbox.acknowledged(mark)
        await outbox.flush()
        assert outbox.acknowledged(mark) and not outbox.acknowledged(outbox.mark())

        refusing = _outbox(stack)  # at once: its producer knows no partition yet
        mark = refusing.mark()
        missing = refusing.settings.topic(topics.PIVOTS)
        refusing.to_changelog(missing, 99, b"k", b"v", lambda p, o: None)  # no partition 99
        with pytest.raises(BrokerError):
            await refusing.flush()
        await refusing.flush()
        assert not refusing.acknowledged(mark)

    asyncio.run(run())


def test_held_records_leave_once_per_thing_and_before_any_control_record(stack: Stack) -> None:
    """While held, only the last record about each journey leaves, in the order of their last
    change; a control record sends what is held first, so a marker never overtakes a record
    it covers. Not held, each record leaves at once."""
    outbox = _outbox(stack)

    def journey(journey_id: str, version: int) -> dict[str, object]:
        return {
            "journey_id": journey_id,
            "profile_id": "p",
            "started_at": 1_000,
            "last_at": 2_000,
            "status": "open",
            "channels": ["web"],
            "touchpoints": version,
            "version": version,
        }

    async def send() -> None:
        latest = outbox.send_latest
        outbox.hold()
        await latest(topics.JOURNEYS, "Journey", journey("j1", 1), key="p", about="j1")
        await latest(topics.JOURNEYS, "Journey", journey("j2", 2), key="p", about="j2")
        await latest(topics.JOURNEYS, "Journey", journey("j1", 3), key="p", about="j1")
        await outbox.everywhere(topics.JOURNEYS, "Tick", {"task": 0})
        await latest(topics.JOURNEYS, "Journey", journey("j1", 4), key="p", about="j1")
        await latest(topics.JOURNEYS, "Journey", journey("j1", 5), key="p", about="j1")
        outbox.release()
        await latest(topics.JOURNEYS, "Journey", journey("j1", 6), key="p", about="j1")
        await latest(topics.JOURNEYS, "Journey", journey("j1", 7), key="p", about="j1")
        await outbox.flush()

    asyncio.run(send())

    partition = partition_of(b"p", outbox.partitions(topics.JOURNEYS))
    decoded = [outbox.codec.decode(v) for v in _values(outbox, topics.JOURNEYS, partition, 20)]
    seen = [
        f"{r['journey_id']}@{r['version']}" if name.endswith("Journey") else "tick"
        for name, r in decoded
    ]
    assert seen == ["j2@2", "j1@3", "tick", "j1@5", "j1@6", "j1@7"]
