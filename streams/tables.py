"""The stages' faust tables, with their changelog records sent by the outbox's producer.

faust sends each table change through its own producer (aiokafka, every record built in Python),
and an event saves about two. Sent by librdkafka instead, they also fall under the outbox's flush
before each commit: an input offset is committed only once every table change made while
handling the records before it is acknowledged. faust still restores the tables from the same
changelog topics, and RocksDB still learns which changelog offset it holds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP
from parcours.schemas.errors import StateError
from parcours.streams.outbox import Outbox


class Table(faust.Table):  # type: ignore[type-arg]
    def __init__(self, app: faust.App, *, outbox: Outbox, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.outbox = outbox

    def send_changelog(  # type: ignore[override]  # faust reads only message.partition
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        if partition is None:  # only with use_partitioner, which these tables do not use
            raise StateError("a table change outside a stream", table=self.name)
        serializers = self.app.serializers
        topic = self.changelog_topic.get_topic_name()
        if value is None and not self.outbox.settings.changelog_tombstones:
            value, value_serializer = None, "json"  # a deleted key: JSON null, not a tombstone
        self.outbox.to_changelog(
            topic,
            partition,
            serializers.dumps_key(
                self.key_type, key, serializer=key_serializer or self.key_serializer
            ),
            serializers.dumps_value(
                self.value_type, value, serializer=value_serializer or self.value_serializer
            ),
            lambda partition, offset: self.data.set_persisted_offset(TP(topic, partition), offset),
        )
        return SimpleNamespace(message=SimpleNamespace(partition=partition))


def table(app: faust.App, name: str, outbox: Outbox, **options: Any) -> Table:
    """``app.Table(name, …)`` of this class (what ``app.Table`` does with its own)."""
    created = Table(app, outbox=outbox, name=name, beacon=app.tables.beacon, **options)
    app.tables.add(created)
    return created
