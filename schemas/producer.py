"""The producer SDK channel services use: validate, encode to Avro, send keyed by identity.

with TouchpointProducer(load_settings()) as producer:
    producer.send({"event_id": "…", "occurred_at": "…", "channel": "web", …})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Framed:
    """What a touchpoint sent in a frame needs if Kafka refuses the frame: to go again alone."""

    key: bytes
    event_id: str
    on_failure: FailureCallback | None


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
        then gets one report per frame. A frame Kafka refuses is sent again one touchpoint at
        a time, so each refusal still names its touchpoint and nothing valid is lost."""
        self.settings = settings
        self.topic = settings.topic("touchpoints")
        self.codec = codec or codec_for(settings)
        self._producer = Producer(producer_config(settings))
        self._on_delivery = on_delivery
        self._lock = threading.Lock()
        self.delivered = 0
        self.failures: list[str] = []
        self._frames: Frames[_Framed] | None = Frames() if framed else None
        self._partitions = topic_partitions(settings, self.topic) if framed else 0
        self._refused: list[Frame[_Framed]] = []
        """Frames Kafka refused: each touchpoint is sent again alone, so that a refusal is
        reported for the touchpoints it concerns and none other is lost."""

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
                note = _Framed(key, touchpoint.event_id, on_failure)
                for frame in self._frames.add(self.topic, partition, value, note):
                    self._produce_frame(frame)
                self._send_refused_alone()
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
        items: int = 1,
    ) -> None:
        """Enqueue raw bytes (``items`` touchpoints); waits (serving delivery reports) while
        the local queue is full."""
        callback = partial(self._delivered, on_failure, items)
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

    def _produce_frame(self, frame: Frame[_Framed]) -> None:
        if len(frame.items) == 1:
            self._produce_alone(frame, 0)
            return
        refused = partial(self._refuse, frame)
        try:
            value = frame.message(self.codec)
            self.produce(
                frame.topic, b"frame", value, frame.partition, refused, items=len(frame.items)
            )
        except KafkaException:
            self._refused.append(frame)

    def _refuse(self, frame: Frame[_Framed], reason: str) -> None:
        self._refused.append(frame)  # sent again outside the delivery report (_send_refused_alone)

    def _produce_alone(self, frame: Frame[_Framed], index: int) -> None:
        note = frame.notes[index]
        try:
            self.produce(
                frame.topic, note.key, frame.items[index], frame.partition, note.on_failure
            )
        except KafkaException as exc:
            error = BrokerError(f"event: not produced: {exc.args[0].str()}", event_id=note.event_id)
            if note.on_failure is None:
                self.failures.append(str(error))
            else:
                note.on_failure(str(error))

    def _send_refused_alone(self) -> None:
        while self._refused:
            frame = self._refused.pop(0)
            for index in range(len(frame.items)):
                self._produce_alone(frame, index)

    def flush(self, timeout: float = 60.0) -> None:
        """Send what waits for its frame, then wait until the broker has everything."""
        for frame in self._frames.take() if self._frames else ():
            self._produce_frame(frame)
        deadline = time.monotonic() + timeout
        while True:
            self._send_refused_alone()
            while self._producer.flush(0.5) > 0:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"{len(self._producer)} messages not delivered after {timeout}s"
                    )
            if not self._refused:
                break
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
