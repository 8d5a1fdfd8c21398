"""The collector's producer: a batch is answered only once Kafka acknowledged all of it.

The SDK's idempotent producer configuration (``acks=all``, ``enable.idempotence``), one poll
thread serving delivery reports, and per batch one future that resolves when its last report
arrived: awaiting a batch, not each event, is what lets linger batch the messages.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from parcours.schemas.errors import NotAcknowledged, QueueFull
from parcours.schemas.kafka import producer_config
from parcours.schemas.settings import Settings


class _Batch:
    """Counts one batch's delivery reports (on the poll thread) and wakes its request once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        self.pending = size
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is not None:
                self.failures.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
            self.pending -= 1
            last = self.pending == 0
        if last:
            self.loop.call_soon_threadsafe(self._finish)

    def cancel(self, count: int) -> None:
        """``count`` messages were never produced: no report will come for them."""
        with self._lock:
            self.pending -= count
            last = self.pending == 0
        if last:
            self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class AckingProducer:
    """Produces batches and awaits Kafka's acknowledgement of each (see the module doc)."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.capacity = settings.collector_queue_messages
        self.ack_timeout = settings.collector_ack_timeout_seconds
        config = producer_config(settings) | {
            "queue.buffering.max.messages": self.capacity,
            # librdkafka gives up on a message after this; the request has answered 503 by then.
            "message.timeout.ms": int(self.ack_timeout * 1000) + 5000,
            # A request produces its whole batch at once, so waiting for more messages only adds
            # to the answer's latency, and 4 clients awaiting answers are bound by it.
            "linger.ms": 1,
        }
        self._producer = Producer(config | overrides)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="delivery-reports", daemon=True)
        self._poller.start()

    def __len__(self) -> int:
        """Messages produced and not yet acknowledged (queued, in flight, or reported)."""
        return len(self._producer)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.poll_once()

    def poll_once(self) -> None:
        self._producer.poll(0.1)

    async def send(self, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) pairs; return once Kafka acknowledged every one.

        QueueFull (nothing of the batch was produced, or what was is acknowledged first) when
        the queue has no room; NotAcknowledged when Kafka refused one or did not answer in time.
        """
        if not messages:
            return
        if len(self._producer) + len(messages) > self.capacity:
            raise QueueFull(
                f"producer queue full ({len(self._producer)} of {self.capacity} messages)",
                retry_after=1,
            )
        batch = _Batch(asyncio.get_running_loop(), len(messages))
        produced = 0
        try:
            for key, value in messages:
                self._producer.produce(topic, value=value, key=key, on_delivery=batch.delivered)
                produced += 1
        except BufferError:
            batch.cancel(len(messages) - produced)
            await self._wait(batch)
            raise QueueFull(
                f"producer queue full after {produced} of {len(messages)} events", retry_after=1
            ) from None
        await self._wait(batch)

    async def _wait(self, batch: _Batch) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(batch.done), self.ack_timeout)
        except TimeoutError:
            raise NotAcknowledged(
                f"Kafka did not acknowledge {batch.pending} events within {self.ack_timeout:g}s",
                retry_after=5,
            ) from None
        if batch.failures:
            raise NotAcknowledged(
                f"Kafka refused {len(batch.failures)} events; first: {batch.failures[0]}",
                retry_after=5,
            )

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._poller.join()
        self._producer.flush(timeout)
