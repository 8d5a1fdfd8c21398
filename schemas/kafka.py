"""librdkafka configuration derived from the settings, shared by the SDK producer and the sinks."""

from __future__ import annotations

from typing import Any

from parcours.schemas.errors import ConfigError
from parcours.schemas.settings import Settings


def client_config(settings: Settings) -> dict[str, Any]:
    if settings.kafka_bootstrap is None:
        raise ConfigError("no Kafka to talk to: set PARCOURS_KAFKA_BOOTSTRAP or start the stack")
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username or ""
        password = settings.kafka_sasl_password
        conf["sasl.password"] = password.get_secret_value() if password else ""
    return conf


def producer_config(settings: Settings) -> dict[str, Any]:
    return client_config(settings) | {
        "enable.idempotence": True,  # retries never duplicate or reorder within a partition
        "acks": "all",
        # A record waits up to 25 ms for others to the same partition: the broker's cost is per
        # request (make bench, 2026-12-04: Tansu 62 µs/event instead of 96 at 5 ms, and
        # produce → visible p50 659 ms instead of 838 with the broker less busy).
        "linger.ms": 25,
        "batch.num.messages": 10000,
    }


def consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    return client_config(settings) | {
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,  # offsets move only after the batch is in ClickHouse
        "session.timeout.ms": int(settings.session_timeout_seconds * 1000),
        "heartbeat.interval.ms": max(100, int(settings.session_timeout_seconds * 1000) // 6),
        "max.poll.interval.ms": 600_000,
    }


def topic_partitions(settings: Settings, topic: str, timeout: float = 10.0) -> int:
    """How many partitions a topic has (BrokerError if it does not exist)."""
    from confluent_kafka.admin import AdminClient
    from parcours.schemas.errors import BrokerError

    metadata = AdminClient(client_config(settings)).list_topics(topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise BrokerError("topic not found", topic=topic)
    return len(found.partitions)
