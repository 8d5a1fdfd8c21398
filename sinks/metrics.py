"""The sink's own Prometheus metrics (the ones every stage has are in ``schemas/observe.py``)."""

from __future__ import annotations

from parcours.schemas.observe import DEAD_LETTERS, EVENTS_IN, EVENTS_OUT
from prometheus_client import Counter, Histogram

__all__ = [
    "BATCH_SECONDS",
    "DEAD_LETTERS",
    "EVENTS_IN",
    "EVENTS_OUT",
    "RETRIES",
    "ROWS_DROPPED",
    "ROWS_WRITTEN",
]

ROWS_WRITTEN = Counter("parcours_sink_rows_written", "Rows ClickHouse accepted", ["table"])
ROWS_DROPPED = Counter(
    "parcours_sink_rows_dropped",
    "Dead-letter rows ClickHouse refused (nowhere left to keep them; still in Kafka)",
    ["table"],
)
RETRIES = Counter(
    "parcours_sink_insert_retries", "Inserts retried because ClickHouse failed", ["table"]
)
BATCH_SECONDS = Histogram(
    "parcours_sink_batch_seconds",
    "Time to write one batch, retries and dead-lettering included",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
