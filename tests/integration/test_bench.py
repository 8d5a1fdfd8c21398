"""The benchmark commands run end to end on the embedded stack and report what they promise
(small sizes: this checks the commands, it does not time anything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _run(*args: str) -> tuple[list[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    done = subprocess.run(
        [sys.executable, "-m", "parcours.deploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return lines[:-1], json.loads(lines[-1])


def test_bench_reports_rates_cpu_per_process_records_and_paced_latency() -> None:
    summary, figures = _run(
        "bench", "--customers", "400", "--paced-rate", "40", "--paced-seconds", "3"
    )  # fmt: skip
    e2e = figures["end_to_end"]
    big = e2e["big_day"]
    assert big["events"] > e2e["small_day"]["events"] > 0
    assert e2e["marginal"]["events"] == big["events"] - e2e["small_day"]["events"]
    assert {"replay", "tansu", "sink", "worker-0"} <= set(big["cpu_us_per_event"])
    assert all(us > 0 for name, us in big["cpu_us_per_event"].items() if name != "collector")
    # A replay sends touchpoints in frames of up to 1,000 (one per partition at least), plus a
    # begin and an end marker per partition; the stages frame their internal records too.
    messages = big["events"] / 1000 + 4 + 2 * 4
    assert 0 < big["records_per_event"]["touchpoints"] <= round(messages / big["events"], 2)
    assert big["records_per_event"]["identity"] < 0.5
    assert big["records_per_event"]["touchpoints.resolved"] < 0.5
    assert big["records_per_event_total"] > 3
    paced = e2e["paced"]
    assert paced["events"] == 120
    assert 0 < paced["produce_to_visible_ms"]["p50"] <= paced["produce_to_visible_ms"]["p99"]
    assert figures["machine"]["cores"] == os.cpu_count()
    assert any(line.startswith("CPU µs/event over the big day: ") for line in summary)


def test_bench_state_restarts_a_worker_on_both_stores() -> None:
    _, figures = _run("bench-state", "--profiles", "2000", "--days", "2")
    assert figures["days_of_history"] == 2
    assert figures["bytes_per_profile"]["mean"] > 0
    # The records events came in are kept beside the profile, not inside it.
    kept = figures["bytes_per_profile"]["events_kept_mean"]
    assert figures["record_bytes_per_profile"]["mean"] > 100 * kept > 0  # a touchpoint each
    # A profile merged away keeps only where it went.
    assert figures["merged_away_per_profile"] > 0.1
    assert 0 < figures["bytes_per_merged_away"] < 400
    for store in ("memory://", "rocksdb://"):
        measured = figures["stores"][store]
        assert measured["changelog_bytes"] > 2000 * 100
        for start in ("cold_start", "restart"):
            assert measured[start]["seconds"] > 0 and measured[start]["rss_mib"] > 0
