"""The sink's batch: ``add()`` rows, ``flush()`` when full or old, ``write()`` with retry.

Two kinds of failure, two answers (README: Poison rows and outages):

- ClickHouse refuses the rows themselves (:class:`RowsRefused`): the batch is split in halves
  until the refused rows are found; each goes to ``dead_letters`` with ClickHouse's error and
  where it came from, and every other row is written.
- ClickHouse is down or slow (any other :class:`SinkError`): the insert is retried with
  exponential backoff for as long as it takes. The consumer is not polled meanwhile
  (backpressure), nothing is dropped, and a retried insert that had in fact landed is
  deduplicated by its token (``sinks/backend.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parcours.schemas.errors import RowsRefused, SinkError
from parcours.schemas.records import Source, dead_letter_record
from parcours.sinks import metrics
from parcours.sinks.backend import Backend
from parcours.sinks.rows import dead_letter_row

log = logging.getLogger(__name__)

# Markers go last: a marker row promises that everything before it is already in ClickHouse.
LAST_TABLES = ("markers",)
DEAD_LETTERS = "dead_letters"


@dataclass(frozen=True)
class Origin:
    """The Kafka message a row was made from: what a refused row's dead letter keeps."""

    source: Source
    payload: bytes


@dataclass(frozen=True)
class Pending:
    row: dict[str, Any]
    origin: Origin | None


class Batch:
    def __init__(self) -> None:
        self.rows: dict[str, list[Pending]] = defaultdict(list)
        self.offsets: dict[tuple[str, int], int] = {}
        self.started = time.monotonic()
        self.size = 0

    def add(self, table: str, row: dict[str, Any], origin: Origin | None = None) -> None:
        self.rows[table].append(Pending(row, origin))
        self.size += 1

    def advance(self, topic: str, partition: int, offset: int) -> None:
        """Record that the message at ``offset`` is in this batch (commit ``offset + 1``)."""
        self.offsets[(topic, partition)] = offset + 1

    def tables(self) -> list[str]:
        ordered = sorted(t for t in self.rows if t not in LAST_TABLES)
        return ordered + [t for t in LAST_TABLES if t in self.rows]


class BatchWriter:
    def __init__(
        self,
        backend: Backend,
        *,
        max_rows: int,
        max_seconds: float,
        max_backoff: float,
        stopping: threading.Event | None = None,
        alive: Callable[[], None] = lambda: None,
    ) -> None:
        self.backend = backend
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.max_backoff = max_backoff
        self.stopping = stopping or threading.Event()
        self.alive = alive
        """Called while retrying: waiting for ClickHouse is not being stuck (liveness)."""
        self.batch = Batch()
        self.written = 0
        self.retries = 0
        self.dead_lettered = 0
        self.failing = False
        """Whether the last insert failed and is being retried (readiness)."""

    def add(self, table: str, row: dict[str, Any], origin: Origin | None = None) -> None:
        self.batch.add(table, row, origin)

    def due(self) -> bool:
        age = time.monotonic() - self.batch.started
        return self.batch.size >= self.max_rows or (
            bool(self.batch.offsets) and age >= self.max_seconds
        )

    def flush(self) -> dict[tuple[str, int], int]:
        """Write the batch; returns the offsets that are now safe to commit."""
        batch, self.batch = self.batch, Batch()
        self.write(batch)
        return batch.offsets

    def write(self, batch: Batch) -> None:
        if not batch.size:
            return
        with metrics.BATCH_SECONDS.time():
            for table in batch.tables():
                self._write_or_split(table, batch.rows[table])

    def _write_or_split(self, table: str, pending: list[Pending]) -> None:
        """Insert ``pending``; if ClickHouse refuses the data, bisect down to the refused rows."""
        try:
            self._insert_with_retry(table, [p.row for p in pending])
        except RowsRefused as exc:
            if len(pending) > 1:
                half = len(pending) // 2
                self._write_or_split(table, pending[:half])
                self._write_or_split(table, pending[half:])
            else:
                self._refused(table, pending[0], exc)
            return
        self.written += len(pending)
        metrics.ROWS_WRITTEN.labels(table).inc(len(pending))
        metrics.EVENTS_OUT.labels("sink").inc(len(pending))

    def _refused(self, table: str, pending: Pending, exc: RowsRefused) -> None:
        origin = pending.origin
        where = (
            f"{origin.source.topic}[{origin.source.partition}]@{origin.source.offset}"
            if origin
            else "unknown offset"
        )
        if table == DEAD_LETTERS or origin is None:
            # Nowhere left to keep it: the message stays in Kafka at its offset, named here.
            log.error("ClickHouse refused a %s row from %s, dropped: %s", table, where, exc)
            metrics.ROWS_DROPPED.labels(table).inc()
            return
        log.warning("ClickHouse refused a %s row from %s, dead-lettered: %s", table, where, exc)
        reason = f"ClickHouse refused the row for {table}: {exc.message}"
        record = dead_letter_record("sink", reason, origin.payload, origin.source)
        self._write_or_split(DEAD_LETTERS, [Pending(dead_letter_row(record), None)])
        self.dead_lettered += 1
        metrics.DEAD_LETTERS.labels("sink").inc()

    def _insert_with_retry(self, table: str, rows: list[dict[str, Any]]) -> None:
        delay = 0.1
        while True:
            try:
                self.backend.insert(table, rows)
                self.failing = False
                return
            except RowsRefused:
                self.failing = False
                raise
            except SinkError as exc:
                self.failing = True
                self.retries += 1
                metrics.RETRIES.labels(table).inc()
                log.warning("insert into %s failed, retrying in %.1fs: %s", table, delay, exc)
                self.alive()
                if self.stopping.wait(delay):
                    # Not committed, so the batch is consumed again on restart: nothing is lost.
                    raise SinkError("stopped before the batch was written", table=table) from exc
                delay = min(delay * 2, self.max_backoff)
