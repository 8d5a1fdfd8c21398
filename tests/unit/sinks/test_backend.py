from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from parcours.sinks.backend import json_lines, rows_of


def test_rows_become_json_lines_clickhouse_reads_back_as_they_were() -> None:
    rows = [
        {"event_id": "e1", "occurred_at": "2026-12-03 21:40:18.123", "value": 12.5},
        {"event_id": "é2", "identities": {"email": "a@b.c"}, "items": ["x"], "score": None},
    ]
    body = json_lines(rows)
    assert body.count("\n") == 1
    assert rows_of(body.encode()) == rows


def test_a_value_json_has_no_type_for_is_written_as_text() -> None:
    at = datetime(2026, 12, 3, 21, 40, 18, tzinfo=UTC)
    [row] = rows_of(json_lines([{"at": at, "amount": Decimal("1.10")}]).encode())
    assert row == {"at": "2026-12-03 21:40:18+00:00", "amount": "1.10"}
