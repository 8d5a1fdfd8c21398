"""Where the stages' records go: Avro-encoded sends to a topic, one partition or all of them.

Records leave through librdkafka (confluent-kafka), not through faust's producer: each event
costs a worker about ten sends, and aiokafka builds every one of them in Python (its
accumulator and sender), where librdkafka queues a record in a few microseconds and batches it
in its own thread. The tables' changes leave through it too (streams/tables.py). faust still
commits the offsets, and it flushes its producer before each commit: :meth:`Outbox.flush` runs
first, so an input offset is committed only once every record and table change sent while
handling the records before it has been acknowledged (at-least-once, as before).

Records for the internal topics (``identity``, ``touchpoints.resolved``) travel in frames: every
record costs faust's consumer and the broker about the same whatever its size, and an event
makes about three of them. Each goes into a queue per destination partition, in the order it was
sent, and a queue leaves as one ``Frame`` record when it is full or ready (see
``FRAME_READY_ITEMS``), when it has lingered, and before every commit. Order per destination partition is what
the stages rely on (data before the watermark or vote that covers it), and it is kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.errors import BrokerError
from parcours.schemas.frames import Frame, Frames, partition_of
from parcours.schemas.kafka import producer_config, topic_partitions
from parcours.schemas.settings import Settings

FLUSH_POLL_SECONDS = 0.002
"""How often a flush looks at what is still unacknowledged (the event loop runs meanwhile)."""

FRAMED = (topics.IDENTITY, topics.RESOLVED)
"""The internal topics, whose records travel in frames, as JSON (only the workers read them)."""
FRAME_READY_ITEMS = 100
FRAME_LINGER_SECONDS = 0.01
"""After each input record a frame leaves if it holds this many items or its first has waited
this long: under load frames fill up; at a trickle each hop adds at most the linger."""


class Outbox:
    def __init__(self, app: faust.App, settings: Settings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.topics = {
            name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes)
            for name in topics.ALL
        }
        self._names = {name: settings.topic(name) for name in topics.ALL}
        self._partitions: dict[str, int] = {}
        self._producer = Producer(
            producer_config(settings)
            # The partitioner of the Java client and of aiokafka: a key's partition does not
            # depend on which client sent it (producer_config lingers 25 ms: sends travel together).
            | {"partitioner": "murmur2_random"}
        )
        self._failed: list[tuple[str, int, KafkaError]] = []
        self._refused = False
        """Whether the broker ever refused a record (then :meth:`acknowledged` never says yes)."""
        self._flushes = 0
        """Flushes started so far (the number of the last one)."""
        self._flushed = 0
        """The number of the last flush that ended with every record it waited for delivered."""
        self._next = 0
        """Sequence number of the next record sent."""
        self._pending: dict[int, None] = {}
        """Sequence numbers of the records not acknowledged yet, oldest first."""
        self._frames: Frames[None] = Frames()
        self._latest: dict[tuple[str, bytes, str], tuple[str, dict[str, Any]]] | None = None
        """While held (:meth:`hold`): per topic, key and what a record describes, the last
        record sent about it, and its schema."""

    def topic(self, name: str) -> Any:
        """The faust topic a stage's agent consumes."""
        return self.topics[name]

    def partitions(self, name: str) -> int:
        if name not in self._partitions:
            self._partitions[name] = topic_partitions(self.settings, self.settings.topic(name))
        return self._partitions[name]

    async def send(
        self, name: str, schema: str, record: dict[str, Any], *, key: str | None = None
    ) -> None:
        await self.send_raw(name, self._encode(name, schema, record), key=key)

    async def send_raw(self, name: str, value: bytes, *, key: str | None = None) -> None:
        self._route(name, value, key.encode() if key else None, -1)

    async def send_latest(
        self, name: str, schema: str, record: dict[str, Any], *, key: str, about: str
    ) -> None:
        """:meth:`send` a record that replaces the last one about ``about`` (a new version of a
        row): while held, only the last one about each thing leaves, at :meth:`release`."""
        if self._latest is None:
            await self.send(name, schema, record, key=key)
            return
        place = (name, key.encode(), about)
        self._latest.pop(place, None)  # leaves in the order of the last changes
        self._latest[place] = (schema, record)

    def hold(self) -> None:
        """From now on, :meth:`send_latest` keeps the last record about each thing: a frame
        often holds several events of one journey, and each changed its summary."""
        self._latest = {}

    def release(self) -> None:
        """Send what :meth:`hold` kept, and stop holding."""
        self.send_held()
        self._latest = None

    def send_held(self) -> None:
        """Send what is held, and go on holding. A control record and a flush send it first: a
        record never leaves after the watermark or end-of-run marker that covers it."""
        if not self._latest:
            return
        for (name, key, _), (schema, record) in self._latest.items():
            self._route(name, self._encode(name, schema, record), key, -1)
        self._latest.clear()

    async def to_partition(
        self, name: str, schema: str, record: dict[str, Any], partition: int
    ) -> None:
        self.send_held()
        self._route(name, self._encode(name, schema, record), b"control", partition)

    async def everywhere(self, name: str, schema: str, record: dict[str, Any]) -> None:
        """To every partition of ``name``, for control records each task downstream must see."""
        self.send_held()
        value = self._encode(name, schema, record)
        for partition in range(self.partitions(name)):
            self._route(name, value, b"control", partition)

    def _encode(self, name: str, schema: str, record: dict[str, Any]) -> bytes:
        """Avro for the public topics; the internal ones carry JSON (only workers read them)."""
        encode = self.codec.encode_internal if name in FRAMED else self.codec.encode
        value: bytes = encode(schema, record)
        return value

    def _route(self, name: str, value: bytes, key: bytes | None, partition: int) -> None:
        topic = self._names[name]
        if name not in FRAMED:
            self._send(topic, value, key, partition)
            return
        if partition < 0:
            # The partition librdkafka's murmur2_random would choose: a key lands where it did
            # before frames, and where any Java-compatible client sends it.
            partition = partition_of(key or b"", self.partitions(name))
        for frame in self._frames.add(topic, partition, value, None):
            self._send_frame(frame)

    def send_frames(self, *, ready: bool = False) -> None:
        """Send the waiting frames (acknowledged by the next :meth:`flush`): all of them, or
        only those ``ready``, which hold enough items or have lingered long enough."""
        lingered = time.monotonic() - FRAME_LINGER_SECONDS

        def unready(frame: Frame[None]) -> bool:
            return ready and len(frame.items) < FRAME_READY_ITEMS and frame.since > lingered

        for frame in self._frames.take(unready):
            self._send_frame(frame)

    def _send_frame(self, frame: Frame[None]) -> None:
        self._send(frame.topic, frame.message(self.codec), b"frame", frame.partition)

    def to_changelog(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        stored: Callable[[int, int], None],
    ) -> None:
        """A table change (faust makes it outside a coroutine); ``stored(partition, offset)``
        once the broker has it."""
        self._send(topic, value, key, partition, stored)

    def _send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int,
        stored: Callable[[int, int], None] | None = None,
    ) -> None:
        sequence = self._next
        self._next += 1

        def delivered(error: KafkaError | None, message: Message) -> None:
            del self._pending[sequence]
            if error is not None:
                self._refused = True
                self._failed.append((topic, int(message.partition() or 0), error))
            elif stored is not None:
                stored(int(message.partition() or 0), int(message.offset() or 0))

        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=delivered)
                break
            except BufferError:  # librdkafka's queue is full: wait for the broker (backpressure)
                self._producer.poll(FLUSH_POLL_SECONDS)
            except KafkaException as exc:
                # Refused before it left (a partition the metadata already says does not exist):
                # the next flush fails, as for a record the broker refused.
                self._refused = True
                self._failed.append((topic, partition, exc.args[0]))
                return
        self._pending[sequence] = None
        self._producer.poll(0)  # serves delivery reports, so acknowledged records leave the queue

    def mark(self) -> int:
        """A mark after every record sent so far, frames still open included: see
        :meth:`acknowledged`."""
        return self._flushes + 1

    def acknowledged(self, mark: int) -> bool:
        """Whether the broker has every record sent before ``mark`` was taken: a flush that
        started after it succeeded (faust flushes before every commit). Never again once the
        broker refused a record: the records are handled again after a failed flush."""
        return not self._refused and self._flushed >= mark

    async def flush(self) -> None:
        """Until every record sent before this call is acknowledged (not those sent meanwhile:
        under load the queue is never empty); BrokerError if one was refused (then nothing is
        committed, and the records are handled again)."""
        self._flushes += 1
        number = self._flushes
        self.send_held()
        self.send_frames()
        mark = self._next
        # Sequence numbers enter in increasing order, so the first pending one is the oldest.
        while self._pending and next(iter(self._pending)) < mark:
            self._producer.poll(0)
            await asyncio.sleep(FLUSH_POLL_SECONDS)
        if self._failed:
            topic, partition, error = self._failed[0]
            failed, self._failed = len(self._failed), []
            raise BrokerError(
                f"{failed} record(s) not delivered: {error}", topic=topic, partition=partition
            )
        self._flushed = max(self._flushed, number)
