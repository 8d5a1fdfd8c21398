"""The ClickHouse sink process: consume the pipeline's output topics, batch, write, then commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.errors import SchemaError
from parcours.schemas.kafka import consumer_config
from parcours.schemas.producer import codec_for
from parcours.schemas.records import Source, dead_letter_record
from parcours.schemas.settings import Settings
from parcours.sinks.backend import Backend
from parcours.sinks.batch import BatchWriter
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

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.router = Router(codec_for(settings), settings)
        self.stopping = threading.Event()
        self.writer = BatchWriter(
            backend,
            max_rows=settings.sink_batch_size,
            max_seconds=settings.sink_flush_seconds,
            max_backoff=settings.sink_max_backoff_seconds,
            stopping=self.stopping,
        )
        self.consumer = Consumer(consumer_config(settings, f"{settings.app_id}-sink"))

    def run(self) -> None:
        inputs = [self.settings.topic(name) for name in topics.SINK_INPUTS]
        self.consumer.subscribe(inputs, on_revoke=self._on_revoke)
        try:
            while not self.stopping.is_set():
                for msg in self.consumer.consume(1000, timeout=0.1):
                    self._take(msg)
                if self.writer.due():
                    self._flush_and_commit()
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
        table, row = self.router.route(msg)
        self.writer.add(table, row)
        self.writer.batch.advance(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

    def _flush_and_commit(self) -> None:
        offsets = self.writer.flush()
        if offsets:
            commits = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            self.consumer.commit(offsets=commits, asynchronous=False)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Whatever is buffered for the partitions leaving us goes in before someone else takes them.
        self._flush_and_commit()


def run_sink(settings: Settings) -> None:
    """The ``parcours sink`` process: migrate, serve SQL for the chDB data dir, consume until SIGTERM."""
    import signal

    from parcours.sinks.backend import open_backend
    from parcours.sinks.migrations import migrate
    from parcours.sinks.sqlserver import SqlServer

    backend = open_backend(settings)
    try:
        migrate(backend)
        sink = Sink(settings, backend)
        signal.signal(signal.SIGTERM, lambda *_: sink.stop())
        signal.signal(signal.SIGINT, lambda *_: sink.stop())
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with SqlServer(backend, settings.data_dir):
            sink.run()
    finally:
        backend.close()
