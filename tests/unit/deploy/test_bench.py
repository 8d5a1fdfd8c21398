from __future__ import annotations

from typing import Any

from parcours.deploy.bench import summary


def figures(marginal: int | None) -> dict[str, Any]:
    day = {"events_per_second": 900, "customers": 400}
    big = day | {
        "events_per_second": 1200,
        "cpu_us_per_event": {"worker-0": 410.0, "tansu": 120.0},
        "cpu_us_per_event_total": 530.0,
        "records_per_event": {"journeys": 1.3},
        "records_per_event_total": 1.3,
    }
    return {
        "machine": {"cpu": "a CPU", "cores": 2, "python": "3.11.7"},
        "ingest_core": {"microseconds_per_event": 30.0},
        "journey_core": {"microseconds_per_event": 90.0},
        "end_to_end": {
            "partitions": 4,
            "workers": 1,
            "small_day": day | {"customers": 100},
            "big_day": big,
            "marginal": {"events_per_second": marginal},
            "paced": {"produced_events_per_second": 40, "produce_to_visible_ms": {"p50": 800}},
        },
    }


def test_the_summary_gives_the_marginal_rate() -> None:
    lines = summary(figures(1500))
    assert "marginal 1,500 events/s" in lines[2]
    assert lines[3] == "CPU µs/event over the big day: worker-0 410, tansu 120 (total 530.0)"


def test_days_too_small_for_a_marginal_rate_say_so() -> None:
    [rates] = [line for line in summary(figures(None)) if line.startswith("end to end")]
    assert rates.endswith(
        "no marginal rate (the big day took no longer than the small one: more customers)"
    )
