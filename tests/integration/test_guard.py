"""Hostile input through `parcours replay`: an oversized line, records Kafka refuses, plaintext
personal data. Each is a rejected (or redacted) line; everything valid reaches ClickHouse."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from parcours.deploy import replay as replay_module
from parcours.deploy.generate import generate
from parcours.deploy.replay import replay
from parcours.schemas.producer import FailureCallback, TouchpointProducer
from parcours.schemas.sdk import hash_email, hash_phone, parse_touchpoint
from parcours.schemas.settings import Settings
from parcours.sinks.backend import Backend

from tests.factories import touchpoint
from tests.integration.conftest import eventually, query

pytestmark = pytest.mark.integration

ISSUE_ATTRIBUTES = {"contact": "Jane.Doe@Example.com", "mobile": "+33 6 12 34 56 78"}


def _parcours(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    return subprocess.run(
        [sys.executable, "-m", "parcours.deploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean | env,
    )


def _good_lines(count: int) -> tuple[int, list[str]]:
    seed = random.randrange(10**6)
    return seed, [json.dumps(event) for event in generate(count, seed=seed)]


def _summary(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_a_2mb_line_is_rejected_with_its_number_and_the_rest_goes_on(
    data_dir: Path, reader: Backend, tmp_path: Path
) -> None:
    seed, lines = _good_lines(400)
    huge = json.dumps(touchpoint(event_id=f"huge-{seed}", attributes={"blob": "x" * 2_000_000}))
    lines.insert(149, huge)  # line 150
    path = tmp_path / "with-huge-line.jsonl"
    path.write_text("\n".join(lines) + "\n")

    done = _parcours("replay", str(path), "--data-dir", str(data_dir))

    assert done.returncode == 0, done.stderr
    assert (_summary(done)["accepted"], _summary(done)["rejected"]) == (400, 1)
    reported = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    assert reported == [
        f"line 150: event: {len(huge):,} bytes is over the limit of 262,144 "
        "(PARCOURS_MAX_EVENT_BYTES)"
    ]
    rows = query(
        reader,
        f"SELECT uniqExact(event_id) AS n FROM {{db}}.touchpoints WHERE event_id LIKE 'ev-{seed}-%'",
    )
    assert rows == [{"n": 400}]
    dead = query(
        reader,
        "SELECT line, reason, length(payload) AS size FROM {db}.dead_letters "
        f"WHERE stage = 'ingest' AND position(payload, 'huge-{seed}') > 0",
    )
    assert dead == [
        {
            "line": 150,
            "reason": f"{reported[0]} (payload cut to its first 262,144 bytes)",
            "size": 262_144,
        }
    ]


class LateRefusals:
    """Around the real librdkafka producer: a ``refuse-late`` record Kafka refuses at once is
    reported to its delivery callback on the next poll instead, as for a refusal by the broker."""

    def __init__(self, real: Producer) -> None:
        self.real = real
        self.pending: list[tuple[Callable[..., None], KafkaError]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        try:
            self.real.produce(topic, **kwargs)
        except KafkaException as exc:
            if b"refuse-late" not in kwargs["value"]:
                raise
            self.pending.append((kwargs["on_delivery"], exc.args[0]))

    def poll(self, timeout: float) -> int:
        served, self.pending = self.pending, []
        for callback, error in served:
            callback(error, None)
        return len(served) + self.real.poll(timeout)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return self.real.flush(timeout)

    def __len__(self) -> int:
        return len(self.real) + len(self.pending)


class RefusingProducer(TouchpointProducer):
    """The real producer, but records whose bytes carry ``refuse`` go to a partition their
    topic does not have: Kafka refuses them at once, or (``refuse-late``) in the delivery report.
    A replay sends frames: the frame holding such a touchpoint is refused, then the touchpoint
    alone, and the other touchpoints of the frame get through."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(settings, **options)
        self._producer = LateRefusals(self._producer)  # type: ignore[assignment]

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_failure: FailureCallback | None = None,
        items: int = 1,
    ) -> None:
        if b"refuse" in value and topic == self.topic:
            partition = 97
        super().produce(topic, key, value, partition, on_failure, items=items)


def test_records_kafka_refuses_are_rejected_lines(
    settings: Settings, reader: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed, lines = _good_lines(300)
    refused = {20: f"refuse-late-{seed}", 200: f"refuse-now-{seed}"}
    for number, event_id in refused.items():
        lines.insert(number - 1, json.dumps(touchpoint(event_id=event_id)))
    path = tmp_path / "refused.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(replay_module, "TouchpointProducer", RefusingProducer)

    result = replay(settings, path, reader=reader, timeout=600)

    assert (result.accepted, result.rejected) == (300, 2)
    reasons = {r.line: r.reason for r in result.rejections}
    assert reasons[20].startswith("event: not delivered: ")
    assert reasons[20].endswith("Local: Unknown partition")
    assert reasons[200] == (
        "event: not produced: Unable to produce message: Local: Unknown partition "
        f"(event_id={refused[200]})"
    )
    rows = query(
        reader,
        f"SELECT uniqExact(event_id) AS n FROM {{db}}.touchpoints WHERE event_id LIKE 'ev-{seed}-%'",
    )
    assert rows == [{"n": 300}]
    dead = query(
        reader,
        "SELECT line FROM {db}.dead_letters "
        f"WHERE stage = 'ingest' AND match(toString(payload), 'refuse-(late|now)-{seed}') ORDER BY line",
    )
    assert dead == [{"line": 20}, {"line": 200}]


def test_plaintext_contact_details_end_redacted_in_clickhouse(
    data_dir: Path, reader: Backend, tmp_path: Path
) -> None:
    seed = random.randrange(10**6)
    lines = [
        touchpoint(event_id=f"pii-{seed}", attributes=ISSUE_ATTRIBUTES),
        # Rejected for another reason: its dead letter must not carry the address either.
        touchpoint(event_id=f"pii-bad-{seed}", channel="fax", attributes=ISSUE_ATTRIBUTES),
    ]
    path = tmp_path / "pii.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    done = _parcours("replay", str(path), "--data-dir", str(data_dir))

    assert done.returncode == 0, done.stderr
    assert (_summary(done)["accepted"], _summary(done)["rejected"]) == (1, 1)
    rows = query(
        reader,
        f"SELECT attributes FROM {{db}}.touchpoints WHERE event_id = 'pii-{seed}'",
    )
    assert rows == [
        {
            "attributes": {
                "contact": hash_email("jane.doe@example.com"),
                "mobile": hash_phone("+33612345678"),
            }
        }
    ]
    dead = query(
        reader,
        "SELECT line, toString(payload) AS payload FROM {db}.dead_letters "
        f"WHERE position(payload, 'pii-bad-{seed}') > 0",
    )
    assert len(dead) == 1 and dead[0]["line"] == 2
    assert "Jane" not in dead[0]["payload"] and "12 34 56" not in dead[0]["payload"]
    assert hash_email("jane.doe@example.com") in dead[0]["payload"]


def test_reject_policy_refuses_the_event_naming_the_field(
    data_dir: Path, reader: Backend, tmp_path: Path
) -> None:
    seed = random.randrange(10**6)
    lines = [
        touchpoint(event_id=f"ok-{seed}", attributes={"url": "/cart", "order": "ord-000123"}),
        touchpoint(event_id=f"pii-{seed}", attributes=ISSUE_ATTRIBUTES),
    ]
    path = tmp_path / "pii-reject.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    done = _parcours("replay", str(path), "--data-dir", str(data_dir), PARCOURS_PII_POLICY="reject")

    assert done.returncode == 0, done.stderr
    assert (_summary(done)["accepted"], _summary(done)["rejected"]) == (1, 1)
    reported = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    assert len(reported) == 1
    assert reported[0].startswith("line 2: attributes.contact: looks like an e-mail address")
    assert "Jane" not in done.stderr
    rows = query(
        reader,
        f"SELECT event_id FROM {{db}}.touchpoints WHERE event_id IN ('ok-{seed}', 'pii-{seed}')",
    )
    assert rows == [{"event_id": f"ok-{seed}"}]


def test_personal_data_written_without_the_sdk_is_redacted_by_the_workers(
    settings: Settings, reader: Backend
) -> None:
    event_id = f"raw-pii-{random.randrange(10**6)}"
    record = parse_touchpoint(touchpoint(event_id=event_id, attributes=ISSUE_ATTRIBUTES)).to_avro()
    with TouchpointProducer(settings) as producer:
        # Straight onto the topic, the way a producer that does not use the SDK writes.
        producer.produce(producer.topic, b"k", producer.codec.encode("Touchpoint", record))

    rows = eventually(
        lambda: query(
            reader, f"SELECT attributes FROM {{db}}.touchpoints WHERE event_id = '{event_id}'"
        ),
        lambda found: len(found) >= 1,
    )
    assert rows[0]["attributes"] == {
        "contact": hash_email("jane.doe@example.com"),
        "mobile": hash_phone("+33612345678"),
    }
