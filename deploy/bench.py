"""``parcours bench``: the processing core alone, then the pipeline end to end on the embedded stack."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from parcours.deploy.generate import generate, write_jsonl
from parcours.deploy.replay import replay
from parcours.deploy.stack import embedded_stack
from parcours.schemas.codec import Codec
from parcours.schemas.records import Source
from parcours.schemas.sdk import parse_touchpoint
from parcours.schemas.settings import Settings
from parcours.sinks.backend import rows_of
from parcours.sinks.client import open_reader
from parcours.streams.identity import IdentityGraph, profile_id, usable_identities
from parcours.streams.ingest import Ingest
from parcours.streams.journey import EventFacts, JourneyCore, ProfileState


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def bench_core(events: int) -> dict[str, Any]:
    """Decode + validate + re-encode (the worker's work per event), single-threaded, no Kafka."""
    codec = Codec()
    encoded = [
        codec.encode("Touchpoint", parse_touchpoint(e).to_avro()) for e in generate(events, seed=11)
    ]
    ingest = Ingest(codec)
    started = time.perf_counter()
    for offset, value in enumerate(encoded):
        ingest.process(value, Source("touchpoints", 0, offset, 0))
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "events_per_second": round(events / seconds),
        "microseconds_per_event": round(seconds / events * 1e6, 1),
    }


def bench_stitching(events: int) -> dict[str, Any]:
    """The pure core of the identity and journey stages, single-threaded, no Kafka, no codec:
    identity graph (links delivered in-process), merges, journey stitching, per event."""
    touchpoints = [parse_touchpoint(e) for e in generate(events, seed=11)]
    inputs = [
        (
            usable_identities(tp.identities, tp.event_id),
            EventFacts(
                tp.event_id, int(tp.occurred_at.timestamp() * 1000), tp.channel.value, tp.action
            ),
        )
        for tp in touchpoints
    ]
    graph, core = IdentityGraph({}), JourneyCore()
    profiles: dict[str, ProfileState] = {}
    started = time.perf_counter()
    for identities, facts in inputs:
        _, effects = graph.observe(identities, facts.event_id, facts.occurred_at)
        links, merges = deque(effects.links), list(effects.merges)
        while links:
            more = graph.receive(links.popleft())
            links.extend(more.links)
            merges.extend(more.merges)
        for merge in merges:
            if merge.loser in profiles:
                survivor = profiles.setdefault(merge.survivor, ProfileState(merge.survivor))
                core.absorb(survivor, profiles.pop(merge.loser), None)
        profile = profile_id(graph.label_of(identities[0]))
        core.add(profiles.setdefault(profile, ProfileState(profile)), facts, None)
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "profiles": len(profiles),
        "events_per_second": round(events / seconds),
        "microseconds_per_event": round(seconds / events * 1e6, 1),
    }


def bench_pipeline(
    settings: Settings, events: int, partitions: int, workers: int
) -> dict[str, Any]:
    """A warm-up run (so consumer-group joins are not measured), then ``events`` as one burst."""
    with tempfile.TemporaryDirectory(prefix="parcours-bench-") as tmp:
        warmup, measured = Path(tmp) / "warmup.jsonl", Path(tmp) / "bench.jsonl"
        with open(warmup, "w") as handle:
            write_jsonl(generate(500, seed=12), handle)
        with open(measured, "w") as handle:
            write_jsonl(generate(events, seed=13), handle)
        isolated = {
            "data_dir": Path(tmp) / "data",
            "clickhouse_url": None,
            "kafka_bootstrap": None,
            "partitions": partitions,
        }
        with embedded_stack(settings.model_copy(update=isolated), workers=workers) as stack:
            reader = open_reader(stack.settings)
            replay(stack.settings, warmup, reader=reader, check=stack.check)
            result = replay(stack.settings, measured, reader=reader, check=stack.check)
            latency = rows_of(
                reader.query(
                    # First placement of each event: later versions are re-stitches, not latency.
                    "SELECT quantilesExact(0.5, 0.95, 0.99)(ms) AS q FROM ("
                    "SELECT dateDiff('millisecond', any(produced_at), min(ingested_at)) AS ms "
                    f"FROM {reader.database}.touchpoints WHERE event_id LIKE 'ev-13-%' "
                    "GROUP BY event_id)"
                )
            )[0]["q"]
    return {
        "events": result.accepted,
        "partitions": partitions,
        "workers": workers,
        "seconds": round(result.seconds, 2),
        "events_per_second": round(result.accepted / result.seconds),
        "produce_events_per_second": round(result.accepted / result.produce_seconds),
        # A burst: every event is produced at once, so this includes queueing behind the backlog.
        "burst_latency_ms": {"p50": latency[0], "p95": latency[1], "p99": latency[2]},
    }


def run_bench(settings: Settings, events: int, partitions: int, workers: int) -> dict[str, Any]:
    return {
        "machine": machine(),
        "ingest_core": bench_core(min(events, 50_000)),
        "journey_core": bench_stitching(min(events, 50_000)),
        "end_to_end": bench_pipeline(settings, events, partitions, workers),
    }
