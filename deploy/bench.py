"""``parcours bench``: the processing core alone, then the pipeline end to end on the embedded stack."""

from __future__ import annotations

import os
import platform
import tempfile
import time
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
from parcours.streams.ingest import Ingest


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
                    "SELECT quantilesExact(0.5, 0.95, 0.99)"
                    "(dateDiff('millisecond', produced_at, ingested_at)) AS q "
                    f"FROM {reader.database}.touchpoints WHERE event_id LIKE 'ev-13-%'"
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
        "core": bench_core(min(events, 50_000)),
        "end_to_end": bench_pipeline(settings, events, partitions, workers),
    }
