"""The ClickHouse sink process: consume the pipeline's output topics, batch, write, then commit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.errors import SchemaError
from parcours.schemas.heap import tune_collector
from parcours.schemas.kafka import consumer_config
from parcours.schemas.observe import CONSUMER_LAG, EVENTS_IN, Health
from parcours.schemas.producer import codec_for
from parcours.schemas.records import Source, dead_letter_record
from parcours.schemas.settings import Settings
from parcours.schemas.watchdog import watch
from parcours.sinks.backend import Backend, open_backend
from parcours.sinks.batch import BatchWriter, Origin
from parcours.sinks.rows import (
    dead_letter_row,
    dropoff_row,
    followup_row,
    handoff_row,
    journey_row,
    marker_row,
    merge_row,
    pivot_row,
    touchpoint_row,
    warning_row,
)

log = logging.getLogger(__name__)
LAG_EVERY_SECONDS = 5.0


# Versioned rows go to the `*_versions` tables; analysts read the contract names (views).
TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "Journey": ("journey_versions", journey_row),
    "IdentityWarning": ("identity_warnings", warning_row),
    "ProfileMerge": ("profile_merges", merge_row),
    "Pivot": ("pivot_versions", pivot_row),
    "Dropoff": ("dropoff_versions", dropoff_row),
    "Followup": ("followup_versions", followup_row),
    "Handoff": ("handoff_versions", handoff_row),
}


class Router:
    """Decide which table a message belongs to; what cannot be decoded becomes a dead letter."""

    def __init__(self, codec: Codec, settings: Settings) -> None:
        self.codec = codec
        self.base_topic = {settings.topic(name): name for name in topics.SINK_INPUTS}

    def route(self, msg: Message) -> tuple[str, dict[str, Any]]:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        value = msg.value() or b""
        try:
            name, record = self.codec.decode(value)
            kind = name.rsplit(".", 1)[-1]
            if kind == "Marker":
                return "markers", marker_row(record, self.base_topic[topic], partition)
            if kind == "ResolvedTouchpoint":
                return "touchpoint_versions", touchpoint_row(record, partition, offset)
            if kind == "DeadLetter":
                return "dead_letters", dead_letter_row(record)
            if kind in TABLES:
                table, to_row = TABLES[kind]
                return table, to_row(record)
            raise SchemaError(f"no table for {name}")
        except (SchemaError, KeyError, TypeError, ValueError) as exc:
            source = Source(topic, partition, offset, msg.timestamp()[1])
            reason = f"sink could not decode: {exc}"
            log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, reason)
            return "dead_letters", dead_letter_row(
                dead_letter_record("sink", reason, value, source)
            )


class Sink:
    """One consumer in the ``<app_id>-sink`` group; offsets are committed after each write."""

    def __init__(self, settings: Settings, backend: Backend, health: Health | None = None) -> None:
        self.settings = settings
        self.router = Router(codec_for(settings), settings)
        self.stopping = threading.Event()
        self.health = health or Health(settings.liveness_seconds)
        self.writer = BatchWriter(
            backend,
            max_rows=settings.sink_batch_size,
            max_seconds=settings.sink_flush_seconds,
            max_backoff=settings.sink_max_backoff_seconds,
            stopping=self.stopping,
            alive=self.health.beat,
        )
        # Its log goes through Python's logging, which the watchdog quiets during an outage.
        config = consumer_config(settings, f"{settings.app_id}-sink")
        # A fetch the broker holds delays what lands meanwhile (Tansu polls in halves of the wait).
        prompt = {"fetch.wait.max.ms": settings.fetch_max_wait_ms}
        self.consumer = Consumer(config | prompt | {"logger": logging.getLogger("librdkafka")})
        self.assigned = False
        self._lag_at = 0.0
        self.events_in = EVENTS_IN.labels("sink")  # once: finding it costs more than counting
        self.health.not_ready = self._not_ready

    def run(self) -> None:
        inputs = [self.settings.topic(name) for name in topics.SINK_INPUTS]
        self.consumer.subscribe(inputs, on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stopping.is_set():
                for msg in self.consumer.consume(1000, timeout=0.1):
                    self._take(msg)
                if self.writer.due():
                    self._flush_and_commit()
                self._observe()
            self._flush_and_commit()
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()

    def _take(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        self.events_in.inc()
        table, row = self.router.route(msg)
        source = Source(topic, partition, offset, msg.timestamp()[1])
        self.writer.add(table, row, Origin(source, msg.value() or b""))
        self.writer.batch.advance(topic, partition, offset)

    def _flush_and_commit(self) -> None:
        offsets = self.writer.flush()
        if offsets:
            commits = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            try:
                self.consumer.commit(offsets=commits, asynchronous=False)
            except KafkaException as exc:
                # Lost the partitions meanwhile (a long outage outlasts max.poll.interval.ms):
                # their new owner writes these rows again, and ClickHouse's keys collapse them.
                log.warning("offsets not committed, the rows will be consumed again: %s", exc)

    def _observe(self) -> None:
        """Heartbeat and readiness every loop; consumer lag every few seconds."""
        self.health.beat()
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY_SECONDS:
            return
        self._lag_at = now
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                # Cached: the end offset of the last fetch, no request (a stop is not delayed).
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
        except KafkaException as exc:
            log.info("consumer lag not measured: %s", exc)

    def _not_ready(self) -> str | None:
        if not self.assigned:
            return "not yet assigned partitions of the sink's topics"
        if self.writer.failing:
            return "ClickHouse inserts are failing; retrying"
        return None

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Whatever is buffered for the partitions leaving us goes in before someone else takes them.
        self._flush_and_commit()


def run_sink(
    settings: Settings,
    parent_pid: int | None = None,
    open_clickhouse: Callable[[Settings], Backend] = open_backend,
) -> None:
    """The ``parcours sink`` process: migrate, serve SQL for the chDB data dir and the operators'
    endpoints, consume until SIGTERM, its parent (``parent_pid``) is gone, or its broker is lost
    (schemas/watchdog.py). ``open_clickhouse`` makes the backend (tests wrap it)."""
    import signal

    from parcours.schemas.observe import OpsServer
    from parcours.sinks.migrations import migrate
    from parcours.sinks.sqlserver import SqlServer

    tune_collector()
    health = Health(settings.liveness_seconds)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with OpsServer(health, settings.metrics_host, settings.metrics_port, settings.data_dir, "sink"):
        backend = open_clickhouse(settings)
        try:
            migrate(backend)
            sink = Sink(settings, backend, health)
            signal.signal(signal.SIGTERM, lambda *_: sink.stop())
            signal.signal(signal.SIGINT, lambda *_: sink.stop())
            watch(settings, name="sink", parent_pid=parent_pid, stop=sink.stop)
            with SqlServer(backend, settings.data_dir):
                sink.run()
        finally:
            backend.close()
