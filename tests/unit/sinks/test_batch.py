from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
from parcours.schemas.errors import RowsRefused, SinkError
from parcours.schemas.records import Source
from parcours.sinks.backend import DATA_ERRORS, insert_error
from parcours.sinks.batch import BatchWriter, Origin


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


class RefusingBackend(FlakyBackend):
    """Refuses, as ClickHouse does, any insert that holds a row without an event id."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.attempts = 0

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.attempts += 1
        if any(row.get("event_id") == "" for row in rows):
            raise RowsRefused("Code: 469. Constraint `event_id_present` is violated", table=table)
        super().insert(table, rows)


def _origin(offset: int) -> Origin:
    return Origin(Source("touchpoints.stitched", 2, offset, 0), f"raw-{offset}".encode())


def test_refused_rows_are_found_and_dead_lettered_the_rest_written() -> None:
    backend = RefusingBackend()
    writer = BatchWriter(backend, max_rows=100, max_seconds=60, max_backoff=0.01)
    ids = [f"e{i}" for i in range(37)]
    ids[5] = ids[30] = ""
    for offset, event_id in enumerate(ids):
        writer.add("touchpoints", {"event_id": event_id}, _origin(offset))
        writer.batch.advance("touchpoints.stitched", 2, offset)
    assert writer.flush() == {("touchpoints.stitched", 2): 37}
    written = [
        row["event_id"] for table, rows in backend.inserts if table == "touchpoints" for row in rows
    ]
    assert sorted(written) == sorted(i for i in ids if i)
    letters = [row for table, rows in backend.inserts if table == "dead_letters" for row in rows]
    assert [(d["offset"], d["partition"], d["topic"]) for d in letters] == [
        (5, 2, "touchpoints.stitched"),
        (30, 2, "touchpoints.stitched"),
    ]
    assert all("event_id_present" in d["reason"] and d["stage"] == "sink" for d in letters)
    assert letters[0]["payload_b64"] == base64.b64encode(b"raw-5").decode()
    assert writer.retries == 0 and writer.dead_lettered == 2
    assert backend.attempts < 37  # bisected, not one insert per row


def test_an_outage_is_retried_not_dead_lettered() -> None:
    backend = FlakyBackend(failures=2)
    writer = BatchWriter(backend, max_rows=10, max_seconds=60, max_backoff=0.01)
    writer.add("touchpoints", {"event_id": "a"}, _origin(0))
    writer.flush()
    assert backend.inserts == [("touchpoints", [{"event_id": "a"}])]
    assert writer.retries == 2 and writer.dead_lettered == 0


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (
            "Code: 469. DB::Exception: Constraint `x` is violated at row 3. (VIOLATED_CONSTRAINT)",
            True,
        ),
        (
            "Code: 27. DB::Exception: Cannot parse input: expected '\"' (CANNOT_PARSE_INPUT_ASSERTION_FAILED)",
            True,
        ),
        ("Code: 252. DB::Exception: Too many parts (TOO_MANY_PARTS)", False),
        ("Code: 16. DB::Exception: No such column x in table (NO_SUCH_COLUMN_IN_TABLE)", False),
        ("HTTPConnectionPool(host='ch', port=8123): Read timed out.", False),
        ("Connection refused", False),
    ],
)
def test_only_data_errors_count_as_refused_rows(text: str, refused: bool) -> None:
    error = insert_error(RuntimeError(text), "touchpoints", "chdb")
    assert isinstance(error, SinkError)
    assert isinstance(error, RowsRefused) is refused
    assert 469 in DATA_ERRORS
