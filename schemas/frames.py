"""Several records in one Kafka message: every message costs faust's consumer and the broker
about the same whatever its size, so bulk producers (the workers on their internal topics, a
replay) send records together.

A frame holds records for one topic partition, in the order they were added; a consumer handles
its items in that order (:meth:`parcours.schemas.codec.Codec.unframe`), so the order per
partition, which the stages rely on, is kept."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka.partitioner import murmur2
from parcours.schemas.codec import Codec

FRAME_ITEMS = 1000
FRAME_BYTES = 512 * 1024
"""A frame is sent once it holds this many items or bytes (a broker refuses messages over 1 MB)."""

Note = TypeVar("Note")


@functools.lru_cache(maxsize=1 << 16)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition librdkafka's ``murmur2_random`` and the Java client choose for ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass
class Frame(Generic[Note]):
    topic: str
    partition: int
    items: list[bytes] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    """What the producer wants back per item if the frame is not delivered."""
    size: int = 0
    since: float = field(default_factory=time.monotonic)

    def message(self, codec: Codec) -> bytes:
        """What is sent: a frame of the items, or the item itself when there is only one."""
        return self.items[0] if len(self.items) == 1 else codec.frame(self.items)


class Frames(Generic[Note]):
    """Records waiting for their frame, per topic partition."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], Frame[Note]] = {}

    def add(self, topic: str, partition: int, value: bytes, note: Note) -> list[Frame[Note]]:
        """Add a record; the frames to send now: the one it would overflow (a frame never
        holds more than ``FRAME_BYTES`` of records, unless one record alone is larger) and the
        one it filled."""
        where = (topic, partition)
        ready: list[Frame[Note]] = []
        frame = self._open.get(where)
        if frame is not None and frame.size + len(value) > FRAME_BYTES:
            ready.append(self._open.pop(where))
            frame = None
        if frame is None:
            frame = self._open[where] = Frame(topic, partition)
        frame.items.append(value)
        frame.notes.append(note)
        frame.size += len(value)
        if len(frame.items) >= FRAME_ITEMS or frame.size >= FRAME_BYTES:
            ready.append(self._open.pop(where))
        return ready

    def take(
        self, keep: Callable[[Frame[Note]], bool] = lambda frame: False
    ) -> Iterator[Frame[Note]]:
        """The frames to send now, oldest first: all of them but those ``keep`` holds back."""
        for where, frame in list(self._open.items()):
            if not keep(frame):
                yield self._open.pop(where)

    def __bool__(self) -> bool:
        return bool(self._open)
