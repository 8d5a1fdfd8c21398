"""The producer SDK channel services use: validate, encode to Avro, send keyed by identity.

with TouchpointProducer(load_settings()) as producer:
    producer.send({"event_id": "…", "occurred_at": "…", "channel": "web", …})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from parcours.schemas.codec import Codec, ConfluentRegistry
from parcours.schemas.errors import BrokerError
from parcours.schemas.frames import Frame, Frames, partition_of
from parcours.schemas.kafka import producer_config, topic_partitions
from parcours.schemas.sdk import Touchpoint, parse_touchpoint
from parcours.schemas.settings import Settings

DeliveryCallback = Callable[[KafkaError | None, Message], None]
FailureCallback = Callable[[str], None]
"""Called with the reason when one record could not be delivered."""


def codec_for(settings: Settings) -> Codec:
    """The codec the settings ask for: single-object encoding, or a Schema Registry's framing."""
    if settings.schema_registry_url is None:
        return Codec()
    password = settings.schema_registry_password
    return Codec(
        registry=ConfluentRegistry(
            settings.schema_registry_url,
            settings.schema_registry_user,
            password.get_secret_value() if password else None,
        )
    )


def encode_touchpoint(codec: Codec, topic: str, touchpoint: Touchpoint) -> tuple[bytes, bytes]:
    """The Kafka message of a touchpoint: (key, value), keyed by its strongest identity."""
    value = codec.encode("Touchpoint", touchpoint.to_avro(), subject=f"{topic}-value")
    return touchpoint.routing_key.encode(), value


class TouchpointProducer:
    """Idempotent Kafka producer; failed deliveries are counted and raised by :meth:`flush`,
    except those of records sent with an ``on_failure`` callback, which handles them."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_delivery: DeliveryCallback | None = None,
        codec: Codec | None = None,
        framed: bool = False,
    ) -> None:
        """``framed``: send touchpoints in frames, per partition (a bulk load: each message
        costs the broker and the workers about the same whatever it holds); ``on_delivery``
        then gets one report per frame."""
        self.settings = settings
        self.topic = settings.topic("touchpoints")
        self.codec = codec or codec_for(settings)
        self._producer = Producer(producer_config(settings))
        self._on_delivery = on_delivery
        self._lock = threading.Lock()
        self.delivered = 0
        self.failures: list[str] = []
        self._frames: Frames[FailureCallback | None] | None = Frames() if framed else None
        self._partitions = topic_partitions(settings, self.topic) if framed else 0

    def send(
        self,
        event: Touchpoint | dict[str, Any] | str | bytes,
        on_failure: FailureCallback | None = None,
    ) -> Touchpoint:
        """Validate (the contract, the size limit, the PII policy: ValidationError naming the
        field), encode and enqueue one touchpoint. A record Kafka refuses at once is a
        BrokerError; one it fails to deliver later goes to ``on_failure`` when given."""
        guard = self.settings.guard
        if isinstance(event, Touchpoint):
            touchpoint = guard.apply(event)
        else:
            touchpoint = parse_touchpoint(event, guard)
        key, value = encode_touchpoint(self.codec, self.topic, touchpoint)
        guard.check_size(len(value), "event (Avro)")
        try:
            if self._frames is None:
                self.produce(self.topic, key, value, on_failure=on_failure)
            else:
                partition = partition_of(key, self._partitions)
                for frame in self._frames.add(self.topic, partition, value, on_failure):
                    self._produce_frame(frame)
        except KafkaException as exc:
            raise BrokerError(
                f"event: not produced: {exc.args[0].str()}", event_id=touchpoint.event_id
            ) from None
        return touchpoint

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_failure: FailureCallback | None = None,
    ) -> None:
        """Enqueue raw bytes; waits (serving delivery reports) while the local queue is full."""
        callback = partial(self._delivered, on_failure, 1)
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": callback}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _produce_frame(self, frame: Frame[FailureCallback | None]) -> None:
        def failed(reason: str) -> None:
            for on_failure in frame.notes:
                if on_failure is None:
                    self.failures.append(f"{frame.topic}: {reason}")
                else:
                    on_failure(reason)

        callback = partial(self._delivered, failed, len(frame.items))
        value = frame.message(self.codec)
        while True:
            try:
                self._producer.produce(
                    frame.topic, value, b"frame", frame.partition, on_delivery=callback
                )
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:  # refused at once: each item is reported, none lost
                failed(f"event: not produced: {exc.args[0].str()}")
                return
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Send what waits for its frame, then wait until the broker has everything."""
        for frame in self._frames.take() if self._frames else ():
            self._produce_frame(frame)
        deadline = time.monotonic() + timeout
        while self._producer.flush(0.5) > 0:
            if time.monotonic() > deadline:
                raise BrokerError(f"{len(self._producer)} messages not delivered after {timeout}s")
        if self.failures:
            raise BrokerError(
                f"{len(self.failures)} deliveries failed; first: {self.failures[0]}",
                topic=self.topic,
            )

    def _delivered(
        self, on_failure: FailureCallback | None, count: int, err: KafkaError | None, msg: Message
    ) -> None:
        with self._lock:
            if err is None:
                self.delivered += count
            elif on_failure is None:
                self.failures.append(f"{msg.topic()}: {err.str()}")
        if err is not None and on_failure is not None:
            on_failure(f"event: not delivered: {err.str()}")
        if self._on_delivery is not None:
            self._on_delivery(err, msg)

    def __enter__(self) -> TouchpointProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
