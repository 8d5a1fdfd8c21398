"""``parcours replay``: every line of a JSONL file through producer → Kafka → workers → sink."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from parcours.schemas import pii, topics
from parcours.schemas.codec import Codec
from parcours.schemas.errors import BrokerError, ReplayError, ValidationError
from parcours.schemas.kafka import topic_partitions
from parcours.schemas.producer import TouchpointProducer
from parcours.schemas.records import dead_letter_record, marker_record
from parcours.schemas.settings import Settings
from parcours.sinks.backend import Backend, rows_of

Progress = Callable[[str, int, int | None], None]
"""(phase, done, total) → None; phases: produce, process."""


@dataclass
class Rejection:
    line: int
    reason: str


@dataclass
class ReplayResult:
    run_id: str
    accepted: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    produce_seconds: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.accepted / self.seconds, 1) if self.seconds else None,
        }


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines (1-based, as an editor shows them)."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip(b"\r\n")


def produce_file(
    settings: Settings, path: Path, run_id: str, progress: Progress | None = None
) -> ReplayResult:
    """Send every valid line; a line that is invalid, too large or that Kafka refuses is
    reported with its number and dead-lettered, and the rest of the file goes on."""
    result = ReplayResult(run_id)
    started = time.monotonic()
    latest: datetime | None = None
    undelivered: list[tuple[int, bytes, str]] = []
    with TouchpointProducer(settings, framed=True) as producer:
        reject = _Rejecter(producer, settings, result)
        # Ahead of the events on every partition: the workers never read the wall clock while
        # the replay is open, so its results do not depend on how fast it goes.
        _send_markers(producer, producer.codec, settings, run_id, None, begins=True)
        for number, line in read_lines(path):
            try:
                touchpoint = producer.send(line, on_failure=_note(undelivered, number, line))
            except (ValidationError, BrokerError) as exc:
                reject(number, line, str(exc))
            else:
                result.accepted += 1
                if latest is None or touchpoint.occurred_at > latest:
                    latest = touchpoint.occurred_at
            reject.undelivered(undelivered)
            if progress is not None and (result.accepted + result.rejected) % 500 == 0:
                progress("produce", result.accepted + result.rejected, None)
        # Everything above must be on the broker before the markers that promise it is.
        producer.flush()
        reject.undelivered(undelivered)
        producer.flush()
        _send_markers(producer, producer.codec, settings, run_id, latest)
    result.produce_seconds = time.monotonic() - started
    return result


def _note(
    undelivered: list[tuple[int, bytes, str]], number: int, line: bytes
) -> Callable[[str], None]:
    return lambda reason: undelivered.append((number, line, reason))


class _Rejecter:
    """Counts, reports and dead-letters a rejected line. The dead letter keeps the line with its
    personal data redacted, cut to the event size limit so that it can itself be produced."""

    def __init__(self, producer: TouchpointProducer, settings: Settings, result: ReplayResult):
        self.producer = producer
        self.result = result
        self.topic = settings.topic(topics.DEAD_LETTERS)
        self.limit = settings.max_event_bytes

    def __call__(self, number: int, line: bytes, reason: str) -> None:
        reason = pii.redact(reason)
        self.result.rejected += 1
        self.result.rejections.append(Rejection(number, reason))
        payload = pii.scrub(line[: self.limit])
        if len(line) > self.limit:
            reason = f"{reason} (payload cut to its first {self.limit:,} bytes)"
        record = dead_letter_record("ingest", f"line {number}: {reason}", payload, line=number)
        self.producer.produce(self.topic, None, self.producer.codec.encode("DeadLetter", record))

    def undelivered(self, failed: list[tuple[int, bytes, str]]) -> None:
        """Lines Kafka accepted for sending and then failed to deliver (reported on a poll)."""
        while failed:
            number, line, reason = failed.pop(0)
            self.result.accepted -= 1
            self(number, line, reason)


def _send_markers(
    producer: TouchpointProducer,
    codec: Codec,
    settings: Settings,
    run_id: str,
    latest: datetime | None,
    *,
    begins: bool = False,
) -> None:
    topic = settings.topic(topics.TOUCHPOINTS)
    partitions = topic_partitions(settings, topic)
    for partition in range(partitions):
        marker = marker_record(run_id, partition, partitions, latest, begins=begins)
        producer.produce(topic, b"marker", codec.encode("Marker", marker), partition=partition)


def markers_seen(reader: Backend, run_id: str) -> int:
    """How many (sink partition, upstream partition) markers of this run are in ClickHouse."""
    rows = rows_of(
        reader.query(
            "SELECT uniqExact(topic, partition, source_partition) AS seen "
            f"FROM {reader.database}.markers WHERE run_id = '{run_id}'"
        )
    )
    return int(rows[0]["seen"])


def wait_for_run(
    reader: Backend,
    run_id: str,
    expected: int,
    *,
    timeout: float,
    check: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
) -> None:
    """Block until every marker of ``run_id`` is in ClickHouse (so is all the data before them)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = markers_seen(reader, run_id)
        if progress is not None:
            progress("process", seen, expected)
        if seen >= expected:
            return
        check()
        if time.monotonic() > deadline:
            raise ReplayError(
                f"not finished after {timeout:.0f}s: {seen}/{expected} partition markers reached ClickHouse",
                run_id=run_id,
            )
        time.sleep(0.2)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def sink_partitions(settings: Settings) -> int:
    return sum(topic_partitions(settings, settings.topic(name)) for name in topics.SINK_INPUTS)


def replay(
    settings: Settings,
    path: Path,
    *,
    reader: Backend,
    check: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
    timeout: float = 1800.0,
) -> ReplayResult:
    """Replay ``path`` into the running pipeline that ``settings`` point at; wait until done."""
    if not path.is_file():
        raise ReplayError("no such file", path=str(path))
    started = time.monotonic()
    run_id = new_run_id()
    result = produce_file(settings, path, run_id, progress)
    # The journey stage's tasks send the last markers, one per task to every sink partition.
    sources = topic_partitions(settings, settings.topic(topics.RESOLVED))
    expected = sources * sink_partitions(settings)
    wait_for_run(reader, run_id, expected, timeout=timeout, check=check, progress=progress)
    result.seconds = time.monotonic() - started
    return result
