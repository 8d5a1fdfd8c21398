"""The sink under faults (README: Poison rows and outages), on the real broker and real ClickHouse:
a row ClickHouse refuses is dead-lettered and the rest written; an outage of 20 s is backpressure,
then recovery, with every event id written exactly once."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from parcours.deploy.stack import Stack, create_topics
from parcours.schemas import topics
from parcours.schemas.errors import SinkError
from parcours.schemas.kafka import consumer_config, producer_config
from parcours.schemas.observe import OpsServer
from parcours.schemas.producer import codec_for
from parcours.schemas.sdk import Touchpoint
from parcours.schemas.settings import Settings
from parcours.sinks.backend import Backend, open_backend
from parcours.sinks.consumer import Sink
from parcours.sinks.migrations import migrate

from tests.factories import touchpoint
from tests.integration.conftest import eventually, isolated_settings, query

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = 20.0


class Outage:
    """The real backend, except that for ``seconds`` after the first insert ClickHouse is away:
    the first insert lands but its answer never comes (a time-out), the next ones are refused
    after a delay, as a server that is down or overloaded does."""

    def __init__(self, backend: Backend, seconds: float, delay: float = 0.5) -> None:
        self.inner = backend
        self.database = backend.database
        self.seconds = seconds
        self.delay = delay
        self.began: float | None = None
        self.landed_unanswered = 0
        self.refused = 0
        self.recovered_at: float | None = None

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        if self.began is None:
            self.began = now
            self.inner.insert(table, rows)
            self.landed_unanswered += 1
            raise SinkError("Read timed out (fault injected after the insert landed)", table=table)
        if now - self.began < self.seconds:
            self.refused += 1
            time.sleep(self.delay)
            raise SinkError("Connection refused (fault injected: ClickHouse is down)", table=table)
        if self.recovered_at is None:
            self.recovered_at = now
        self.inner.insert(table, rows)

    def command(self, sql: str) -> None:
        self.inner.command(sql)

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        answer: bytes = self.inner.query(sql, fmt)
        return answer

    def close(self) -> None:
        self.inner.close()


@dataclass
class Sent:
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    """event id → (partition, offset) where the broker put it."""
    payloads: dict[str, bytes] = field(default_factory=dict)


def _resolved(event_id: str, valid_id: str) -> dict[str, Any]:
    tp = Touchpoint(**touchpoint(event_id=valid_id)).to_avro() | {"event_id": event_id}
    return {
        "touchpoint": tp,
        "profile_id": "p-faults",
        "journey_id": "j-faults",
        "routing_key": "anonymous_id:ck-1",
        "produced_at": datetime.now(UTC),
        "source_partition": 0,
        "source_offset": 0,
    }


def produce(settings: Settings, event_ids: list[str]) -> Sent:
    """Each id as a stitched touchpoint on the sink's input topic (an empty id is allowed here:
    the test plays a producer that does not use the SDK)."""
    codec = codec_for(settings)
    producer = Producer(producer_config(settings))
    sent = Sent()

    def delivered(error: Any, msg: Message) -> None:
        assert error is None, error
        event_id = (msg.key() or b"").decode()
        sent.offsets[event_id] = (msg.partition() or 0, msg.offset() or 0)
        sent.payloads[event_id] = msg.value() or b""

    for event_id in event_ids:
        value = codec.encode("ResolvedTouchpoint", _resolved(event_id, event_id or "placeholder"))
        producer.produce(
            settings.topic(topics.STITCHED), value, key=event_id.encode(), on_delivery=delivered
        )
    assert producer.flush(30) == 0
    return sent


def committed(settings: Settings) -> dict[int, int]:
    """The sink group's committed offset per partition of the stitched topic."""
    consumer = Consumer(consumer_config(settings, f"{settings.app_id}-sink"))
    try:
        topic = settings.topic(topics.STITCHED)
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


@pytest.fixture
def own_settings(stack: Stack, tmp_path: Path) -> Settings:
    """Topics and a ClickHouse of this test's own, on the session's broker."""
    server = stack.settings
    settings = isolated_settings(
        tmp_path,
        "faults",
        partitions=2,
        kafka_bootstrap=server.kafka_bootstrap,
        clickhouse_url=server.clickhouse_url,
        clickhouse_user=server.clickhouse_user,
        clickhouse_password=server.clickhouse_password,
        sink_flush_seconds=1.0,
        sink_max_backoff_seconds=2.0,
    )
    create_topics(settings)
    return settings


@pytest.fixture
def clickhouse(own_settings: Settings) -> Iterator[Backend]:
    backend = open_backend(own_settings)
    migrate(backend)
    # Duplicates must stay visible: no background merge may collapse them before we count.
    backend.command(f"SYSTEM STOP MERGES {backend.database}.touchpoint_versions")
    try:
        yield backend
    finally:
        backend.command(f"SYSTEM START MERGES {backend.database}.touchpoint_versions")
        backend.close()


@contextmanager
def running(sink: Sink) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=sink.run, name="sink", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        sink.stop()
        thread.join(60)
        assert not thread.is_alive(), "the sink did not stop"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


def test_a_row_clickhouse_refuses_is_dead_lettered_and_the_rest_written(
    own_settings: Settings, clickhouse: Backend
) -> None:
    run = uuid.uuid4().hex[:8]
    ids = _ids(run, 40)
    ids.insert(17, "")  # breaks the CHECK event_id != '' (sinks/ddl/006_constraints.sql)
    sent = produce(own_settings, ids)
    sink = Sink(own_settings, clickhouse)
    with running(sink):
        letters = eventually(
            lambda: query(
                clickhouse,
                "SELECT stage, reason, base64Encode(payload) AS payload_b64, topic, partition, offset "
                f"FROM {{db}}.dead_letters WHERE topic = '{own_settings.topic(topics.STITCHED)}'",
            ),
            lambda rows: len(rows) >= 1,
        )
        written = eventually(
            lambda: query(
                clickhouse,
                f"SELECT event_id FROM {{db}}.touchpoints WHERE startsWith(event_id, '{run}') "
                "OR event_id = ''",
            ),
            lambda rows: len(rows) >= 40,
        )
        end = {p: max(o for q, o in sent.offsets.values() if q == p) + 1 for p in range(2)}
        eventually(lambda: committed(own_settings), lambda offsets: offsets == end)
    assert sorted(row["event_id"] for row in written) == sorted(ids[:17] + ids[18:])
    assert len(letters) == 1
    letter = letters[0]
    assert letter["stage"] == "sink"
    assert "VIOLATED_CONSTRAINT" in letter["reason"] and "event_id_present" in letter["reason"]
    assert (letter["partition"], letter["offset"]) == sent.offsets[""]
    assert base64.b64decode(letter["payload_b64"]) == sent.payloads[""]
    assert sink.writer.dead_lettered == 1 and sink.writer.retries == 0


def test_an_outage_is_backpressure_then_recovery_with_every_event_once(
    own_settings: Settings, clickhouse: Backend
) -> None:
    run = uuid.uuid4().hex[:8]
    first, second = _ids(f"{run}-a", 150), _ids(f"{run}-b", 150)
    produce(own_settings, first)
    outage = Outage(clickhouse, OUTAGE_SECONDS)
    sink = Sink(own_settings, outage)
    started = time.monotonic()
    ops = OpsServer(sink.health, "127.0.0.1", 0, own_settings.data_dir, "sink")
    with ops, running(sink):
        eventually(lambda: outage.refused, lambda refused: refused >= 1)
        produce(own_settings, second)  # arrives while ClickHouse is away
        while time.monotonic() - started < OUTAGE_SECONDS / 2:
            # Backpressure: nothing is committed, so nothing can be skipped, while it is away.
            assert all(offset < 0 for offset in committed(own_settings).values())
            status, reason = _get(f"{ops.url}/readyz")
            assert (status, _get(f"{ops.url}/healthz")[0]) == (503, 200), reason
            time.sleep(1)
        counts = eventually(
            lambda: query(
                clickhouse,
                "SELECT event_id, count() AS n FROM {db}.touchpoint_versions "
                f"WHERE startsWith(event_id, '{run}') GROUP BY event_id",
            ),
            lambda rows: len(rows) == 300,
            timeout=OUTAGE_SECONDS + 60,
        )
        eventually(lambda: _get(f"{ops.url}/readyz"), lambda answer: answer == (200, "ok\n"))
    assert sorted(row["event_id"] for row in counts) == sorted(first + second)  # none missing
    assert [row for row in counts if int(row["n"]) != 1] == []  # none twice
    assert outage.landed_unanswered == 1 and outage.refused >= 5
    assert outage.recovered_at is not None and outage.began is not None
    assert outage.recovered_at - outage.began >= OUTAGE_SECONDS
    assert sink.writer.retries == outage.landed_unanswered + outage.refused
