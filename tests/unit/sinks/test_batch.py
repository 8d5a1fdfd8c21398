from __future__ import annotations

import threading
from typing import Any

import pytest
from parcours.schemas.errors import SinkError
from parcours.sinks.batch import BatchWriter


class FlakyBackend:
    """Fails the first ``failures`` inserts, then records what it is given."""

    database = "parcours"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inserts: list[tuple[str, list[dict[str, Any]]]] = []

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise SinkError("Connection refused", table=table)
        self.inserts.append((table, rows))

    def command(self, sql: str) -> None:
        raise NotImplementedError

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_failed_insert_is_retried_and_nothing_is_dropped() -> None:
    backend = FlakyBackend(failures=3)
    writer = BatchWriter(backend, max_rows=10, max_seconds=60, max_backoff=0.01)
    writer.add("markers", {"run_id": "r"})
    writer.add("touchpoints", {"event_id": "a"})
    writer.add("touchpoints", {"event_id": "b"})
    writer.batch.advance("touchpoints.resolved", 0, 41)
    offsets = writer.flush()
    assert offsets == {("touchpoints.resolved", 0): 42}
    assert writer.retries == 3
    assert backend.inserts == [
        ("touchpoints", [{"event_id": "a"}, {"event_id": "b"}]),
        ("markers", [{"run_id": "r"}]),  # markers last: they promise the data is in
    ]


def test_due_when_full_or_old() -> None:
    writer = BatchWriter(FlakyBackend(0), max_rows=2, max_seconds=3600, max_backoff=1)
    assert not writer.due()
    writer.add("touchpoints", {})
    assert not writer.due()
    writer.add("touchpoints", {})
    assert writer.due()


def test_stopping_during_retries_keeps_the_batch_uncommitted() -> None:
    stopping = threading.Event()
    stopping.set()
    writer = BatchWriter(
        FlakyBackend(failures=100), max_rows=1, max_seconds=1, max_backoff=1, stopping=stopping
    )
    writer.add("touchpoints", {"event_id": "a"})
    with pytest.raises(SinkError, match="stopped before the batch was written"):
        writer.flush()
