"""`parcours replay` and `parcours sql` as a user runs them: exit code, stdout, stderr, rows."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from parcours.deploy.generate import generate
from parcours.sinks.backend import Backend

from tests.integration.conftest import query

pytestmark = pytest.mark.integration


def _breakers() -> list[tuple[str, str]]:
    """(broken line, what the error must say)."""
    return [
        ('{"event_id": "x", "occurred_at": ', "Invalid JSON"),
        (
            '{"event_id": "x", "occurred_at": "2026-11-02T06:00:00", "channel": "web", "action": "page_view", "identities": {"anonymous_id": "a"}}',
            "occurred_at: needs a UTC offset",
        ),
        (
            '{"event_id": "x", "occurred_at": "2026-11-02T06:00:00Z", "channel": "fax", "action": "page_view", "identities": {"anonymous_id": "a"}}',
            "channel: Input should be",
        ),
        (
            '{"event_id": "x", "occurred_at": "2026-11-02T06:00:00Z", "channel": "web", "action": "page_view", "identities": {"email_sha256": "jane@example.com"}}',
            "identities: email_sha256 must be",
        ),
        (
            '{"occurred_at": "2026-11-02T06:00:00Z", "channel": "web", "action": "page_view", "identities": {"anonymous_id": "a"}}',
            "event_id: Field required",
        ),
    ]


def _parcours(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    return subprocess.run(
        [sys.executable, "-m", "parcours.deploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_replay_of_10000_lines_with_500_broken(
    data_dir: Path, reader: Backend, tmp_path: Path
) -> None:
    seed = random.randrange(10**6)
    lines = [json.dumps(event) for event in generate(10_000, seed=seed)]
    rng = random.Random(seed)
    broken = sorted(rng.sample(range(len(lines)), 500))
    expected_reason: dict[int, str] = {}
    for n, index in enumerate(broken):
        lines[index], expected_reason[index + 1] = _breakers()[n % len(_breakers())]
    path = tmp_path / "day.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # Other tests of the session write dead letters with line numbers too: count this run's only.
    started_ms = int(time.time() * 1000)

    done = _parcours("replay", str(path), "--data-dir", str(data_dir))

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["accepted"], summary["rejected"]) == (9500, 500)
    reported = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    assert len(reported) == 500
    for line in reported:
        number = int(line.split(":")[0].removeprefix("line "))
        assert expected_reason[number] in line
    rows = query(
        reader,
        f"SELECT uniqExact(event_id) AS events FROM {{db}}.touchpoints WHERE event_id LIKE 'ev-{seed}-%'",
    )
    assert rows == [{"events": 9500}]
    dead = query(
        reader,
        "SELECT count() AS n, min(line) AS first FROM {db}.dead_letters "
        "WHERE stage = 'ingest' AND reason LIKE 'line %' "
        f"AND received_at >= fromUnixTimestamp64Milli(toInt64({started_ms}), 'UTC') "
        f"AND line IN ({', '.join(str(i + 1) for i in broken)})",
    )
    assert dead == [{"n": 500, "first": broken[0] + 1}]


def test_sql_answers_while_the_stack_runs(data_dir: Path) -> None:
    done = _parcours(
        "sql",
        "SELECT 1 + 1 AS two, 'parcours' AS name",
        "--data-dir",
        str(data_dir),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"two": 2, "name": "parcours"}
    failed = _parcours(
        "sql", "SELECT no_such_column FROM parcours.touchpoints", "--data-dir", str(data_dir)
    )
    assert failed.returncode == 1
    assert "no_such_column" in failed.stderr and "UNKNOWN_IDENTIFIER" in failed.stderr


def test_replay_starts_and_stops_its_own_stack(tmp_path: Path) -> None:
    """No stack on this data dir: replay brings one up (2 partitions, 2 workers) and leaves none."""
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in generate(300, seed=5)) + "{broken\n")
    data_dir = tmp_path / "own"

    done = _parcours(
        "replay", str(path), "--data-dir", str(data_dir), "--partitions", "2", "--workers", "2"
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["accepted"] == 300
    assert "line 301: event: Invalid JSON" in done.stderr
    leftover = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftover.stdout == ""
    # The data dir is free again: sql opens chDB itself.
    counted = _parcours(
        "sql",
        "SELECT count() AS n FROM parcours.touchpoints",
        "--data-dir",
        str(data_dir),
        "--format",
        "csv",
    )
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.splitlines() == ['"n"', "300"]


def test_up_then_sql_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "background"
    started = _parcours("up", "--data-dir", str(data_dir), "--partitions", "2")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout.strip().splitlines()[-1])
    assert info["kafka_bootstrap"].startswith("127.0.0.1:")
    # The HTTP collector runs with it, at the address it printed and wrote.
    collector = json.loads((data_dir / "collector.json").read_text())
    assert collector["url"] == info["collector"]
    with urllib.request.urlopen(f"{collector['url']}/healthz", timeout=10) as health:
        assert json.loads(health.read())["status"] == "ok"
    try:
        answered = _parcours(
            "sql",
            "SELECT count() AS n FROM parcours.touchpoints",
            "--data-dir",
            str(data_dir),
            "--format",
            "json",
        )
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout) == {"n": 0}
        again = _parcours("up", "--data-dir", str(data_dir))
        assert again.returncode != 0
        assert "already runs" in again.stderr
    finally:
        stopped = _parcours("down", "--data-dir", str(data_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "stopped"
    leftover = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftover.stdout == ""
    assert not (data_dir / "collector.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(collector["pid"], 0)
