"""``parcours bench``: the processing core alone, then the pipeline end to end on the embedded stack."""

from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from parcours.deploy.bench_stack import (
    EVENTS_PER_CUSTOMER,
    day_file,
    marginal,
    measured_replay,
    paced_latency,
    percentiles,
)
from parcours.deploy.generate import generate
from parcours.deploy.replay import replay
from parcours.deploy.stack import embedded_stack
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.kafka import consumer_config
from parcours.schemas.producer import TouchpointProducer, codec_for
from parcours.schemas.records import Source
from parcours.schemas.sdk import parse_touchpoint
from parcours.schemas.settings import Settings
from parcours.sinks.client import open_reader
from parcours.streams.facts import EventFacts, facts_of
from parcours.streams.identity import IdentityGraph, profile_id, usable_identities
from parcours.streams.ingest import Ingest
from parcours.streams.journey import JourneyCore, Outputs, ProfileState


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
    identity graph (links delivered in-process), merges, journey stitching and detections
    (pivots, hand-offs, drop-off timers, follow-ups), per event."""
    touchpoints = [parse_touchpoint(e) for e in generate(events, seed=11)]
    inputs = [
        (
            usable_identities(tp.identities, tp.event_id),
            facts_of(tp.to_avro(), int(tp.occurred_at.timestamp() * 1000)),
        )
        for tp in touchpoints
    ]
    started = time.perf_counter()
    profiles, detected = stitch_day(inputs, JourneyCore())
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "profiles": sum(1 for state in profiles.values() if state.merged_into is None),
        "events_per_second": round(events / seconds),
        "microseconds_per_event": round(seconds / events * 1e6, 1),
        "detected": dict(sorted(detected.items())),
    }


def stitch_day(
    inputs: list[tuple[list[str], EventFacts]], core: JourneyCore
) -> tuple[dict[str, ProfileState], Counter[str]]:
    """Identity graph (links delivered in-process), merges and the journey core over a day's
    ``(identities, facts)`` in order, then its end; the profiles (those merged away as the
    worker keeps them) and what was detected."""
    graph = IdentityGraph({})
    profiles: dict[str, ProfileState] = {}
    detected = Counter[str]()
    for identities, facts in inputs:
        _, effects = graph.observe(identities, facts.event_id, facts.occurred_at)
        links, merges = deque(effects.links), list(effects.merges)
        while links:
            more = graph.receive(links.popleft())
            links.extend(more.links)
            merges.extend(more.merges)
        for merge in merges:
            loser = profiles.get(merge.loser)
            if loser is not None and loser.merged_into is None:
                survivor = profiles.setdefault(merge.survivor, ProfileState(merge.survivor))
                _count(detected, core.absorb(survivor, loser, None, cause=merge.occurred_at))
                profiles[merge.loser] = loser.merged_away(merge.survivor)
        profile = profile_id(graph.label_of(identities[0]))
        state = profiles.setdefault(profile, ProfileState(profile))
        _count(detected, core.add(state, facts, facts.occurred_at))
    end = max(facts.occurred_at for _, facts in inputs)
    for state in profiles.values():
        if state.merged_into is None:
            _count(detected, core.advance(state, end, finished=True))
    return profiles, detected


def _count(counter: Counter[str], out: Outputs) -> None:
    counter["pivots"] += len(out.pivots)
    counter["handoffs"] += len(out.handoffs)
    counter["dropoffs"] += sum(1 for f in out.dropoffs if f.recovered_at is None)
    counter["followups"] += len(out.followups)


LIVE_SHARE = 3
"""The paced run goes at the marginal rate divided by this. Live traffic costs more per event than
a replay (one touchpoint per message, small frames): at half the marginal rate it came to more
than the worker sustains, and the latency measured the queue growing (2026-12-04: p50 1.8 s at
1,250 events/s, 6.7 s at 1,409)."""


def bench_pipeline(
    settings: Settings,
    customers: int,
    partitions: int,
    workers: int,
    paced_rate: float | None,
    paced_seconds: float,
) -> dict[str, Any]:
    """On one warm stack (a small warm-up first, so consumer-group joins are not measured): a day
    of ``customers // 4`` customers, one of ``customers``, and the marginal rate between them;
    then a steady paced run (by default at a third of that rate) for the latency."""
    with tempfile.TemporaryDirectory(prefix="parcours-bench-") as tmp:
        directory = Path(tmp)
        warmup = day_file(directory, 150, seed=12)
        small_day = day_file(directory, max(100, customers // 4), seed=13)
        big_day = day_file(directory, customers, seed=14)
        isolated = {
            "data_dir": directory / "data",
            "clickhouse_url": None,
            "kafka_bootstrap": None,
            "partitions": partitions,
        }
        with embedded_stack(settings.model_copy(update=isolated), workers=workers) as stack:
            reader = open_reader(stack.settings)
            replay(stack.settings, warmup, reader=reader, check=stack.check)
            small = measured_replay(stack, reader, small_day)
            big = measured_replay(stack, reader, big_day)
            rate = marginal(small, big)
            pace = paced_rate or max(50.0, (rate["events_per_second"] or 100) / LIVE_SHARE)
            paced = paced_latency(stack, reader, pace, paced_seconds)
    return {
        "partitions": partitions,
        "workers": workers,
        "small_day": {"customers": max(100, customers // 4)} | small,
        "big_day": {"customers": customers} | big,
        "marginal": rate,
        "paced": paced,
    }


def run_bench(
    settings: Settings,
    customers: int,
    partitions: int,
    workers: int,
    paced_rate: float | None = None,
    paced_seconds: float = 60.0,
) -> dict[str, Any]:
    core_events = min(50_000, round(customers * EVENTS_PER_CUSTOMER))
    return {
        "machine": machine(),
        "ingest_core": bench_core(core_events),
        "journey_core": bench_stitching(core_events),
        "end_to_end": bench_pipeline(
            settings, customers, partitions, workers, paced_rate, paced_seconds
        ),
        "followup_latency": bench_followup_latency(settings, partitions, workers),
    }


def bench_followup_latency(
    settings: Settings, partitions: int, workers: int, carts: int = 40
) -> dict[str, Any]:
    """Live mode: how long after a cart's deadline passes its follow-up is on the topic.

    Touchpoints are stamped with the wall clock and a steady trickle of page views keeps every
    partition's watermark moving, as production traffic does. A follow-up can only go once the
    watermark is the allowed lateness past the deadline (a purchase may still be on its way), so
    the lateness is set to 2 s here and reported; the rest is the pipeline's own delay. Times are
    the deadline and the Kafka timestamp the worker gave the follow-up.
    """
    lateness, abandon = 2.0, 5.0
    with tempfile.TemporaryDirectory(prefix="parcours-latency-") as tmp:
        isolated = {
            "data_dir": Path(tmp) / "data",
            "clickhouse_url": None,
            "kafka_bootstrap": None,
            "partitions": partitions,
            "allowed_lateness_seconds": lateness,
            "cart_abandon_seconds": abandon,
            "quiet_hours": "",
        }
        with embedded_stack(settings.model_copy(update=isolated), workers=workers) as stack:
            delays = _followup_delays(stack.settings, carts, abandon)
    beyond = [d - lateness * 1000 for d in delays]
    return {
        "followups": len(delays),
        "allowed_lateness_ms": int(lateness * 1000),
        "deadline_to_topic_ms": percentiles(delays),
        "beyond_lateness_ms": percentiles(beyond),
    }


def _followup_delays(settings: Settings, carts: int, abandon: float) -> list[float]:
    consumer = Consumer(consumer_config(settings, f"latency-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([settings.topic(topics.followups("abandoned_cart"))])
    codec = codec_for(settings)
    deadlines: dict[str, float] = {}
    delays: list[float] = []
    stop = threading.Event()
    with TouchpointProducer(settings) as producer:
        trickle = threading.Thread(target=_trickle, args=(producer, stop), daemon=True)
        trickle.start()
        try:
            for n in range(carts):
                now = datetime.now(UTC)
                event_id = f"lat-{uuid.uuid4().hex[:10]}"
                producer.send(_cart_event(event_id, now, n))
                deadlines[event_id] = now.timestamp() * 1000 + abandon * 1000
                time.sleep(0.25)
            limit = time.monotonic() + 120
            while len(delays) < carts and time.monotonic() < limit:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                _, record = codec.decode(msg.value() or b"")
                anchor = record.get("anchor_event_id")
                if anchor in deadlines:
                    delays.append(msg.timestamp()[1] - deadlines.pop(anchor))
        finally:
            stop.set()
            trickle.join()
            consumer.close()
    return delays


def _cart_event(event_id: str, at: datetime, n: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": at.isoformat(),
        "channel": "web",
        "action": "add_to_cart",
        "identities": {"crm_id": f"latency-{event_id}"},
        "cart": {
            "cart_id": f"cart-{event_id}",
            "items": [{"sku": f"sku-{n}", "quantity": 1, "unit_price": 10.0}],
            "value": 10.0,
            "currency": "EUR",
        },
        "attributes": {"consent_channel": "email", "consent_granted": "true"},
    }


def _trickle(producer: TouchpointProducer, stop: threading.Event) -> None:
    """Page views from 64 visitors, 20 a second, so that every partition keeps talking."""
    n = 0
    while not stop.is_set():
        n += 1
        producer.send(
            {
                "event_id": f"tick-{uuid.uuid4().hex[:12]}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "channel": "web",
                "action": "page_view",
                "identities": {"anonymous_id": f"visitor-{n % 64}"},
            }
        )
        stop.wait(0.05)


def summary(figures: dict[str, Any]) -> list[str]:
    """The figures a reader looks for first, one per line."""
    box, e2e = figures["machine"], figures["end_to_end"]
    big, paced = e2e["big_day"], e2e["paced"]
    cpu = ", ".join(f"{name} {us:,.0f}" for name, us in big["cpu_us_per_event"].items())
    latency = ", ".join(f"{q} {ms:,} ms" for q, ms in paced["produce_to_visible_ms"].items())
    rate = e2e["marginal"]["events_per_second"]
    # At small sizes the end-of-run rounds, not the events, set both days' times.
    marginal = (
        f"marginal {rate:,} events/s"
        if rate is not None
        else "no marginal rate (the big day took no longer than the small one: more customers)"
    )
    return [
        f"machine: {box['cpu']}, {box['cores']} cores, Python {box['python']}",
        f"pure core: ingest {figures['ingest_core']['microseconds_per_event']} µs/event, "
        f"identity + journey {figures['journey_core']['microseconds_per_event']} µs/event",
        f"end to end ({e2e['partitions']} partitions, {e2e['workers']} worker(s)): "
        f"{e2e['small_day']['events_per_second']:,} events/s at {e2e['small_day']['customers']:,} "
        f"customers, {big['events_per_second']:,} at {big['customers']:,}; {marginal}",
        f"CPU µs/event over the big day: {cpu} (total {big['cpu_us_per_event_total']:,})",
        f"Kafka records per event: {big['records_per_event_total']} "
        f"({', '.join(f'{t} {n}' for t, n in big['records_per_event'].items())})",
        f"paced at {paced['produced_events_per_second']:,} events/s: produce → visible {latency}",
    ]
