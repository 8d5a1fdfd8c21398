"""The sink's batch: ``add()`` rows, ``flush()`` when full or old, ``write()`` with retry.

A failed insert is retried with exponential backoff for as long as it takes: a slow or absent
ClickHouse stops the consumer (backpressure) and never drops a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from parcours.schemas.errors import SinkError
from parcours.sinks.backend import Backend

log = logging.getLogger(__name__)

# Markers go last: a marker row promises that everything before it is already in ClickHouse.
LAST_TABLES = ("markers",)


class Batch:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.offsets: dict[tuple[str, int], int] = {}
        self.started = time.monotonic()
        self.size = 0

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows[table].append(row)
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
    ) -> None:
        self.backend = backend
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.max_backoff = max_backoff
        self.stopping = stopping or threading.Event()
        self.batch = Batch()
        self.written = 0
        self.retries = 0

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.batch.add(table, row)

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
        for table in batch.tables():
            self._insert_with_retry(table, batch.rows[table])
        self.written += batch.size

    def _insert_with_retry(self, table: str, rows: list[dict[str, Any]]) -> None:
        delay = 0.1
        while True:
            try:
                self.backend.insert(table, rows)
                return
            except SinkError as exc:
                self.retries += 1
                log.warning("insert into %s failed, retrying in %.1fs: %s", table, delay, exc)
                if self.stopping.wait(delay):
                    # Not committed, so the batch is consumed again on restart: nothing is lost.
                    raise SinkError("stopped before the batch was written", table=table) from exc
                delay = min(delay * 2, self.max_backoff)
