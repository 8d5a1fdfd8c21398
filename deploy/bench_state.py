"""``parcours bench-state``: what a worker's state costs at a million customers.

Real profiles come from the pure core on generated days of the same customers (``days``: a
history longer than the retention shows what pruning keeps); they are copied under new ids until
there are ``profiles`` of them, written straight to the profiles table's changelog with the
records their events came in (kept once beside them), and a worker is started on it twice (a cold start, then a restart on the same state directory), for the
memory store and for RocksDB. Reported: bytes per profile (its saved form, and the records of its
events, kept once), the worker's memory once ready, and start-to-ready times."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from parcours.deploy.bench import stitch_day
from parcours.deploy.generate import START, generate
from parcours.deploy.stack import Stack, create_topics, start_tansu
from parcours.schemas.codec import Codec
from parcours.schemas.kafka import client_config, producer_config
from parcours.schemas.sdk import parse_touchpoint
from parcours.schemas.settings import Settings
from parcours.streams.facts import facts_of
from parcours.streams.identity import usable_identities
from parcours.streams.journey import JourneyCore
from parcours.streams.stages import RECORD_KEY, Kept, keepable, kept_parts

SAMPLE_CUSTOMERS = 5_000
STORES = ("memory://", "rocksdb://")


@dataclass(frozen=True)
class Sample:
    profile: dict[str, Any]
    """The saved form, as the journey stage keeps it in ``profiles``."""
    records: list[Kept]
    """The records its events came in, as the journey stage keeps them beside the profile."""


def history(customers: int, days: int) -> Iterator[dict[str, Any]]:
    """``days`` generated days of the same customers, one after the other."""
    for day in range(days):
        start = START + timedelta(days=day)
        yield from generate(
            round(customers * 3.23), seed=31 + day, customers=customers, start=start
        )


def sample_profiles(customers: int = SAMPLE_CUSTOMERS, days: int = 1) -> list[Sample]:
    """Every profile after ``days`` generated days (pruned as a worker prunes them)."""
    codec, inputs, records = Codec(), [], {}
    for n, event in enumerate(history(customers, days)):
        touchpoint = parse_touchpoint(event)
        record = touchpoint.to_avro()
        occurred_at = int(touchpoint.occurred_at.timestamp() * 1000)
        records[touchpoint.event_id] = _record(codec, record, touchpoint.routing_key, n)
        identities = usable_identities(touchpoint.identities, touchpoint.event_id)
        inputs.append((identities, facts_of(record, occurred_at)))
    core = JourneyCore()
    profiles, _ = stitch_day(inputs, core)
    return [
        Sample(state.to_json() | {"wake": core.wake(state)}, [records[e] for e in state.events])
        for state in profiles.values()
    ]


def _record(codec: Codec, touchpoint: dict[str, Any], routing_key: str, offset: int) -> Kept:
    """The resolved record the journey stage received, as it keeps it."""
    resolved = {
        "touchpoint": touchpoint,
        "profile_id": f"p-{offset:012d}",
        "journey_id": None,
        "routing_key": routing_key,
        "produced_at": 1_790_000_000_000 + offset,
        "source_partition": offset % 4,
        "source_offset": offset,
    }
    return keepable(*kept_parts(codec, resolved))


def copies(samples: list[Sample], count: int, partitions: int) -> Iterator[Any]:
    """``count`` live profiles, and the profiles merged away beside them in the samples'
    proportion, as (partition, key, value) changelog records: the samples under new ids, each
    with its events' records under keys of its own."""
    live, n = 0, 0
    while live < count:
        partition = n % partitions
        key = f"bench-{n:08d}"
        sample = samples[n % len(samples)]
        for i, record in enumerate(sample.records):
            yield partition, orjson.dumps(f"{RECORD_KEY}{key}/{i}"), orjson.dumps(record)
        value = sample.profile | {"profile_id": key, "partition": partition}
        yield partition, orjson.dumps(key), orjson.dumps(value)
        live += sample.profile["merged_into"] is None
        n += 1


def fill_changelog(settings: Settings, samples: list[Sample], count: int) -> int:
    """Write the profiles to the changelog topic faust restores the table from; bytes written."""
    topic = f"{settings.app_id}-profiles-changelog"
    admin = AdminClient(client_config(settings))
    for future in admin.create_topics([NewTopic(topic, settings.partitions, 1)]).values():
        future.result()
    producer = Producer(producer_config(settings) | {"linger.ms": 50})
    written = 0
    for partition, key, value in copies(samples, count, settings.partitions):
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
        written += len(value)
    producer.flush(120)
    return written


def start_to_ready(stack: Stack) -> dict[str, float]:
    """Start a worker in slot 0; seconds until it has restored its tables and joined; its RSS."""
    started = time.monotonic()
    worker = stack.start_worker(slot=0)
    stack.wait_for_workers(timeout=1800)
    seconds = time.monotonic() - started
    rss = _rss_mib(worker.pid)
    worker.stop(grace=120)
    stack.children.remove(worker)
    return {"seconds": round(seconds, 1), "rss_mib": rss}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def bench_store(settings: Settings, store: str, samples: list[Sample], count: int) -> Any:
    with tempfile.TemporaryDirectory(prefix="parcours-state-") as tmp:
        isolated = settings.model_copy(
            update={"data_dir": Path(tmp), "kafka_bootstrap": None, "state_store": store}
        )
        stack = Stack(isolated)
        try:
            tansu, bootstrap = start_tansu(isolated.data_dir)
            stack.children.append(tansu)
            stack.settings = isolated.model_copy(update={"kafka_bootstrap": bootstrap})
            create_topics(stack.settings)
            started = time.monotonic()
            written = fill_changelog(stack.settings, samples, count)
            filled = time.monotonic() - started
            cold, restart = start_to_ready(stack), start_to_ready(stack)
        finally:
            stack.stop()
    return {
        "changelog_bytes": written,
        "changelog_fill_seconds": round(filled, 1),
        "cold_start": cold,
        "restart": restart,
    }


def bench_state(settings: Settings, profiles: int, partitions: int, days: int) -> dict[str, Any]:
    samples = sample_profiles(days=days)
    merged = [len(orjson.dumps(s.profile)) for s in samples if s.profile["merged_into"]]
    samples_live = [sample for sample in samples if not sample.profile["merged_into"]]
    sizes = [len(orjson.dumps(sample.profile)) for sample in samples_live]
    records = [sum(len(orjson.dumps(r)) for r in sample.records) for sample in samples_live]
    events = [len(sample.records) for sample in samples_live]
    base = settings.model_copy(update={"partitions": partitions, "workers": 1})
    return {
        "profiles": profiles,
        "partitions": partitions,
        "days_of_history": days,
        "bytes_per_profile": {
            "mean": round(statistics.mean(sizes)),
            "p99": sorted(sizes)[int(len(sizes) * 0.99)],
            "max": max(sizes),
            "events_kept_mean": round(statistics.mean(events), 2),
        },
        "record_bytes_per_profile": {
            "mean": round(statistics.mean(records)),
            "p99": sorted(records)[int(len(records) * 0.99)],
        },
        "merged_away_per_profile": round(len(merged) / len(sizes), 2),
        "bytes_per_merged_away": round(statistics.mean(merged)) if merged else 0,
        "stores": {store: bench_store(base, store, samples, profiles) for store in STORES},
    }
