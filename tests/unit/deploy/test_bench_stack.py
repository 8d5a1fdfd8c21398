from typing import Any

import orjson
from parcours.deploy.bench_stack import INSERT_SLACK_MS, FirstPlacements, percentiles


class Answers:
    """A reader that answers each query with the next batch of rows, and keeps the queries."""

    database = "parcours"

    def __init__(self, *batches: list[dict[str, Any]]) -> None:
        self.batches = list(batches)
        self.queries: list[str] = []

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        self.queries.append(sql)
        return b"\n".join(orjson.dumps(row) for row in self.batches.pop(0))


def test_an_event_keeps_the_latency_of_its_first_placement_seen() -> None:
    reader = Answers(
        [{"event_id": "ev-1", "at": 10_000, "ms": 300}],
        # ev-1 placed again after a merge: its row now dates from its second placement.
        [
            {"event_id": "ev-1", "at": 40_000, "ms": 30_300},
            {"event_id": "ev-2", "at": 41_000, "ms": 500},
        ],
        [],
    )
    seen = FirstPlacements(reader, "ev-")  # type: ignore[arg-type]
    seen.look()
    seen.look()
    seen.look()
    assert seen.latency_ms == {"ev-1": 300, "ev-2": 500}
    # Each look starts a little before the newest insert seen; an empty answer keeps it there.
    assert f"fromUnixTimestamp64Milli({10_000 - INSERT_SLACK_MS})" in reader.queries[1]
    assert f"fromUnixTimestamp64Milli({41_000 - INSERT_SLACK_MS})" in reader.queries[2]
    assert "startsWith(event_id, 'ev-')" in reader.queries[0]


def test_percentiles_of_a_run() -> None:
    assert percentiles([float(n) for n in range(1, 101)]) == {"p50": 51, "p95": 96, "p99": 100}
    assert percentiles([]) == {}
