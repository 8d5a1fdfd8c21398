"""Where the stages' records go: Avro-encoded sends to a topic, one partition or all of them."""

from __future__ import annotations

from typing import Any

import faust
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.kafka import topic_partitions
from parcours.schemas.settings import Settings


class Outbox:
    def __init__(self, app: faust.App, settings: Settings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.topics = {
            name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes)
            for name in topics.ALL
        }
        self._partitions: dict[str, int] = {}

    def topic(self, name: str) -> Any:
        return self.topics[name]

    def partitions(self, name: str) -> int:
        if name not in self._partitions:
            self._partitions[name] = topic_partitions(self.settings, self.settings.topic(name))
        return self._partitions[name]

    async def send(
        self, name: str, schema: str, record: dict[str, Any], *, key: str | None = None
    ) -> None:
        await self.send_raw(name, self.codec.encode(schema, record), key=key)

    async def send_raw(self, name: str, value: bytes, *, key: str | None = None) -> None:
        await self.topics[name].send(key=key.encode() if key else None, value=value)

    async def to_partition(
        self, name: str, schema: str, record: dict[str, Any], partition: int
    ) -> None:
        value = self.codec.encode(schema, record)
        await self.topics[name].send(key=b"control", value=value, partition=partition)

    async def everywhere(self, name: str, schema: str, record: dict[str, Any]) -> None:
        """To every partition of ``name``, for control records each task downstream must see."""
        value = self.codec.encode(schema, record)
        for partition in range(self.partitions(name)):
            await self.topics[name].send(key=b"control", value=value, partition=partition)
