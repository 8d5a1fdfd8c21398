"""The pipeline end to end on one warm embedded stack: the marginal rate between two day sizes, the
CPU each process spends per event, the Kafka records each topic gets per event, and the
produce → visible latency at a steady paced rate."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from parcours.deploy.generate import generate, write_jsonl
from parcours.deploy.replay import ReplayResult, replay
from parcours.deploy.stack import Stack
from parcours.schemas.errors import StackError
from parcours.schemas.kafka import consumer_config
from parcours.schemas.producer import TouchpointProducer
from parcours.sinks.backend import Backend, rows_of

EVENTS_PER_CUSTOMER = 3.23
"""What the generator's default day gives (323,000 events for 100,000 customers)."""

TICKS = os.sysconf("SC_CLK_TCK")


def day_file(directory: Path, customers: int, seed: int) -> Path:
    """A generated day of ``customers`` customers, their default number of events."""
    path = directory / f"day-{customers}-{seed}.jsonl"
    with open(path, "w") as handle:
        write_jsonl(generate(round(customers * EVENTS_PER_CUSTOMER), seed, customers), handle)
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def processes(stack: Stack) -> dict[str, int]:
    """Every process of the stack by name; the replay producer runs in this one."""
    return {child.name: child.pid for child in stack.children} | {"replay": os.getpid()}


def cpu_of(stack: Stack) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in processes(stack).items()}


def records_of(stack: Stack) -> dict[str, int]:
    """How many records each topic of the broker holds (the sum of its partitions' end offsets)."""
    consumer = Consumer(consumer_config(stack.settings, "parcours-bench-offsets"))
    try:
        metadata = consumer.list_topics(timeout=10)
        counts: dict[str, int] = {}
        for name, topic in metadata.topics.items():
            ends = (
                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for p in topic.partitions
            )
            counts[name] = sum(ends)
        return counts
    finally:
        consumer.close()


def measured_replay(stack: Stack, reader: Backend, path: Path) -> dict[str, Any]:
    """Replay ``path`` and say what it cost each process and topic."""
    cpu, records = cpu_of(stack), records_of(stack)
    result = replay(stack.settings, path, reader=reader, check=stack.check)
    cpu_after, records_after = cpu_of(stack), records_of(stack)
    per_event = 1e6 / result.accepted
    written = {
        name: round((count - records.get(name, 0)) / result.accepted, 2)
        for name, count in sorted(records_after.items())
        if count > records.get(name, 0)
    }
    return {
        "events": result.accepted,
        "seconds": round(result.seconds, 2),
        "events_per_second": round(result.accepted / result.seconds),
        "cpu_us_per_event": {
            name: round((cpu_after[name] - cpu[name]) * per_event, 1) for name in sorted(cpu)
        },
        "cpu_us_per_event_total": round((sum(cpu_after.values()) - sum(cpu.values())) * per_event),
        "records_per_event": written,
        "records_per_event_total": round(sum(written.values()), 1),
        "_result": result,
    }


def marginal(small: dict[str, Any], big: dict[str, Any]) -> dict[str, Any]:
    """Events per second of the part of the big run the small one does not have: start-up and the
    end-of-run rounds cancel out."""
    small_run: ReplayResult = small.pop("_result")
    big_run: ReplayResult = big.pop("_result")
    events = big_run.accepted - small_run.accepted
    seconds = big_run.seconds - small_run.seconds
    return {
        "events_per_second": round(events / seconds) if seconds > 0 else None,
        "events": events,
        "seconds": round(seconds, 2),
    }


def paced_latency(
    stack: Stack, reader: Backend, rate: float, seconds: float, *, seed: int = 15
) -> dict[str, Any]:
    """Produce a generated day at ``rate`` events/s for ``seconds``, each event stamped with the
    wall clock as it leaves (live traffic); then produce → visible-in-ClickHouse percentiles of
    their first placement, watched while the run goes on (see :class:`FirstPlacements`)."""
    count = max(1, round(rate * seconds))
    events = generate(count, seed, max(10, round(count / EVENTS_PER_CUSTOMER)))
    seen = FirstPlacements(reader, f"ev-{seed}-")
    started = time.monotonic()
    next_look = started + LOOK_EVERY_SECONDS
    with TouchpointProducer(stack.settings) as producer:
        for event in _paced(events, rate, started):
            producer.send(event | {"occurred_at": datetime.now(UTC).isoformat()})
            if time.monotonic() >= next_look:
                seen.look()
                next_look += LOOK_EVERY_SECONDS
    produced_in = time.monotonic() - started
    seen.until_all(stack, count, timeout=max(120.0, seconds * 4))
    return {
        "target_events_per_second": round(rate),
        "produced_events_per_second": round(count / produced_in),
        "events": len(seen.latency_ms),
        "produce_to_visible_ms": percentiles(list(seen.latency_ms.values())),
    }


LOOK_EVERY_SECONDS = 1.0
INSERT_SLACK_MS = 5_000
"""How far before the newest insert seen the next look starts again: an insert is stamped as it
starts, and may be visible a little after a later one."""


class FirstPlacements:
    """When each event of a run was first visible in ClickHouse, looked at while the run goes on.
    A later placement of an event (a merge re-places an anonymous visitor's touchpoints when they
    log in) is a new version of its row, and the table's merges keep only the newest: read at the
    end, the table would date a re-placed event by its last placement, up to the whole run late."""

    def __init__(self, reader: Backend, prefix: str) -> None:
        self.reader = reader
        self.prefix = prefix
        self.latency_ms: dict[str, int] = {}
        """Per event: its Kafka timestamp to the insert of its first row seen."""
        self._since_ms = 0

    def look(self) -> None:
        rows = rows_of(
            self.reader.query(
                "SELECT event_id, toUnixTimestamp64Milli(min(ingested_at)) AS at, "
                "dateDiff('millisecond', any(produced_at), min(ingested_at)) AS ms "
                f"FROM {self.reader.database}.touchpoint_versions "
                f"WHERE startsWith(event_id, '{self.prefix}') "
                f"AND ingested_at >= fromUnixTimestamp64Milli({self._since_ms}) GROUP BY event_id"
            )
        )
        for row in rows:
            self.latency_ms.setdefault(row["event_id"], int(row["ms"]))
        if rows:
            self._since_ms = max(int(row["at"]) for row in rows) - INSERT_SLACK_MS

    def until_all(self, stack: Stack, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stack.check()
            self.look()
            if len(self.latency_ms) >= count:
                return
            time.sleep(0.5)
        seen = len(self.latency_ms)
        raise StackError(f"paced run: {seen}/{count} events visible after {timeout:.0f}s")


QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    at = {name: ordered[min(len(ordered) - 1, int(q * len(ordered)))] for name, q in QUANTILES}
    return {name: round(value) for name, value in at.items()}


def _paced(events: Iterator[dict[str, Any]], rate: float, started: float) -> Iterator[Any]:
    """Hand out the events no faster than ``rate`` a second, in small bursts every 5 ms."""
    for n, event in enumerate(events):
        due = started + n / rate
        ahead = due - time.monotonic()
        if ahead > 0.005:
            time.sleep(ahead)
        yield event
