"""The same day gives the same results at any partitioning and speed: 1 partition and 1 worker,
4 partitions and 2 workers, a worker SIGKILLed mid-replay, a worker paused while a backlog builds.

The day has thousands of customers interleaved, hundreds of whom leave a web cart anonymously,
log in and buy that cart in a store before its deadline: none of them may ever get a drop-off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from parcours.deploy.generate import ANONYMOUS_CART_PREFIX, generate, write_jsonl
from parcours.deploy.replay import ReplayResult, replay
from parcours.deploy.stack import Stack, embedded_stack, worker_state_dir
from parcours.schemas.producer import TouchpointProducer
from parcours.sinks.backend import Backend
from parcours.sinks.client import open_reader

from tests.factories import touchpoint
from tests.integration.conftest import eventually, isolated_settings, query

pytestmark = pytest.mark.integration

EVENTS = 24_000
CUSTOMERS = 8_000
PATTERN = {"anonymous_cart_store_purchase": 0.4}
"""About one journey in four: web cart left anonymously, login, bought in a store in time."""

SNAPSHOT = {
    "touchpoints": "SELECT event_id, profile_id, journey_id, session_key, late FROM {db}.touchpoints "
    "ORDER BY event_id",
    "journeys": "SELECT journey_id, profile_id, started_at, last_at, status, channels, "
    "touchpoints, pivots, sessions FROM {db}.journeys ORDER BY journey_id",
    "warnings": "SELECT identity, crm_id, event_id, occurred_at FROM {db}.identity_warnings FINAL "
    "ORDER BY identity, crm_id",
    "pivots": "SELECT event_id, journey_id, profile_id, from_channel, to_channel, gap_seconds, "
    "failure_driven, failure_event_id FROM {db}.pivots ORDER BY event_id",
    "dropoffs": "SELECT kind, anchor_event_id, journey_id, profile_id, deadline, value, "
    "followup_id, recovered, recovered_value FROM {db}.dropoffs "
    "ORDER BY kind, anchor_event_id",
    "followups": "SELECT followup_id, profile_id, kind, channel, status, reason, send_at, "
    "expires_at, payload FROM {db}.followups ORDER BY followup_id",
    # Every version ever written for the carts bought in a store in time, and every late event:
    # the progress tracking must keep both empty, not only the current views.
    "bought_in_time": "SELECT kind, anchor_event_id, version, retracted FROM {db}.dropoffs "
    f"WHERE startsWith(cart_id, '{ANONYMOUS_CART_PREFIX}') ORDER BY ALL",
    "late": "SELECT event_id FROM {db}.touchpoints WHERE late ORDER BY event_id",
}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    return subprocess.run(
        [sys.executable, "-m", "parcours.deploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _cli_snapshot(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    snapshot = {}
    for name, sql in SNAPSHOT.items():
        done = _cli(
            "sql", sql.replace("{db}", "parcours"), "--data-dir", str(data_dir), "--format", "json"
        )
        assert done.returncode == 0, done.stderr
        snapshot[name] = [json.loads(line) for line in done.stdout.splitlines()]
    return snapshot


def _cli_replay(day: Path, data_dir: Path, partitions: int, workers: int) -> dict[str, Any]:
    done = _cli(
        "replay", str(day), "--data-dir", str(data_dir),
        "--partitions", str(partitions), "--workers", str(workers),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["accepted"] == EVENTS
    return summary


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("day") / "day.jsonl"
    with path.open("w") as handle:
        write_jsonl(generate(EVENTS, seed=23, customers=CUSTOMERS, weights=PATTERN), handle)
    return path


@pytest.fixture(scope="module")
def one_by_one(day: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference: 1 partition, 1 worker, nothing disturbed."""
    data_dir = tmp_path_factory.mktemp("p1w1")
    _cli_replay(day, data_dir, partitions=1, workers=1)
    return _cli_snapshot(data_dir)


def test_the_reference_day_has_merges_warnings_and_cross_channel_journeys(
    one_by_one: dict[str, Any],
) -> None:
    """Guards the comparisons below against comparing two empty results."""
    assert len(one_by_one["touchpoints"]) == EVENTS
    assert all(row["journey_id"] for row in one_by_one["touchpoints"])
    assert len({row["profile_id"] for row in one_by_one["touchpoints"]}) > 100
    assert any(len(j["channels"]) >= 2 for j in one_by_one["journeys"])
    assert len(one_by_one["warnings"]) >= 2
    assert any(p["failure_driven"] for p in one_by_one["pivots"])
    assert {d["kind"] for d in one_by_one["dropoffs"]} >= {"abandoned_cart", "abandoned_checkout"}
    assert {f["status"] for f in one_by_one["followups"]} >= {"scheduled", "suppressed"}
    # One day of events, journeys expire after 7 days: only the wall clock could expire one.
    assert {j["status"] for j in one_by_one["journeys"]} == {"open", "converted"}


def test_a_cart_bought_in_a_store_before_its_deadline_is_never_abandoned(
    day: Path, one_by_one: dict[str, Any]
) -> None:
    carts = {
        line["cart"]["cart_id"]
        for line in map(json.loads, day.read_text().splitlines())
        if (line.get("cart") or {}).get("cart_id", "").startswith(ANONYMOUS_CART_PREFIX)
    }
    assert len(carts) > 1_500, "the day must hold thousands of such customers"
    assert one_by_one["bought_in_time"] == []
    assert one_by_one["late"] == [], "no event of the day is beyond the allowed lateness"


def test_four_partitions_and_two_workers_give_identical_results(
    day: Path, one_by_one: dict[str, Any], tmp_path: Path
) -> None:
    _cli_replay(day, tmp_path / "p4w2", partitions=4, workers=2)
    four_by_two = _cli_snapshot(tmp_path / "p4w2")
    _assert_same_tables(four_by_two, one_by_one)


def _assert_same_tables(
    found: dict[str, list[dict[str, Any]]], reference: dict[str, list[dict[str, Any]]]
) -> None:
    """Every snapshot table equal to the reference's, the first that differs named."""
    for table in SNAPSHOT:
        assert found[table] == reference[table], f"{table} differ"


def _snapshot(reader: Backend) -> dict[str, list[dict[str, Any]]]:
    return {name: query(reader, sql) for name, sql in SNAPSHOT.items()}


def _replay_and_kill(
    day: Path,
    data_dir: Path,
    *,
    workers: int,
    successor: bool,
    kill_at: int = EVENTS // 10,
    **overrides: Any,
) -> dict[str, list[Any]]:
    """Replay the day on 4 partitions and ``workers`` workers; once ``kill_at`` touchpoints are
    in ClickHouse, SIGKILL the first worker (and start a new one in its slot if ``successor``);
    return the snapshot after the replay completed."""
    settings = isolated_settings(
        data_dir, f"kill{workers}", partitions=4, workers=workers, **overrides
    )
    with embedded_stack(settings) as stack:
        return _kill_mid_replay(stack, day, successor=successor, kill_at=kill_at)


def _kill_mid_replay(
    stack: Stack, day: Path, *, successor: bool, kill_at: int
) -> dict[str, list[Any]]:
    reader = open_reader(stack.settings)
    results: list[ReplayResult | BaseException] = []

    def run_replay() -> None:
        try:
            results.append(
                replay(stack.settings, day, reader=reader, check=stack.check, timeout=300)
            )
        except BaseException as exc:  # handed to the test thread
            results.append(exc)

    thread = threading.Thread(target=run_replay)
    thread.start()
    eventually(
        lambda: query(reader, "SELECT count() AS n FROM {db}.touchpoints")[0]["n"],
        lambda n: n >= kill_at or not thread.is_alive(),
        timeout=120,
    )
    victim, others = stack.workers[0], stack.workers[1:]
    os.kill(victim.pid, signal.SIGKILL)
    assert thread.is_alive(), "the replay finished before the kill: the test proves nothing"
    carrying_on = [*others, stack.start_worker(slot=0)] if successor else others
    thread.join(timeout=300)
    assert results and isinstance(results[0], ReplayResult), results
    assert not victim.alive() and all(worker.alive() for worker in carrying_on)
    return _snapshot(reader)


def test_a_worker_killed_mid_replay_changes_nothing(
    day: Path, one_by_one: dict[str, Any], tmp_path: Path
) -> None:
    """The only worker is SIGKILLed mid-replay and a new one takes over: it restores the tables
    from their changelogs, carries on from the committed offsets and publishes again what the
    dead one may not have."""
    survived = _replay_and_kill(day, tmp_path, workers=1, successor=True)
    _assert_same_tables(survived, one_by_one)


def test_on_rocksdb_a_worker_killed_and_restarted_on_its_disk_changes_nothing(
    day: Path, one_by_one: dict[str, Any], tmp_path: Path
) -> None:
    """The production store: the worker keeps its tables in RocksDB, is SIGKILLed mid-replay,
    and its successor reopens the same directory (what a StatefulSet pod restarted on its volume
    does), reading only the changelogs' tail on top of what the disk holds."""
    survived = _replay_and_kill(day, tmp_path, workers=1, successor=True, state_store="rocksdb://")
    slot = worker_state_dir(tmp_path, 0) / "v1" / "tables"
    assert sorted(p.name for p in slot.glob("profiles-*.db")) == [
        f"profiles-{n}.db" for n in range(4)
    ]
    _assert_same_tables(survived, one_by_one)


def test_one_of_two_workers_killed_mid_replay_changes_nothing(
    day: Path, one_by_one: dict[str, Any], tmp_path: Path
) -> None:
    """Two workers share four partitions and one is SIGKILLed mid-replay: the survivor takes the
    dead one's partitions over and keeps its own through the rebalance, where faust used to drop
    what it had fetched for them (streams/app.py, ``_reread_kept_partitions``)."""
    survived = _replay_and_kill(day, tmp_path, workers=2, successor=False)
    _assert_same_tables(survived, one_by_one)


def test_one_of_two_workers_killed_as_the_first_rows_land_changes_nothing(
    day: Path, one_by_one: dict[str, Any], tmp_path: Path
) -> None:
    """Killed this early, the dead worker has not committed some of its partitions yet: the
    survivor must read those from their first message, not from wherever its consumer stood
    after faust dropped what it had fetched during the rebalance (``rewind_uncommitted``)."""
    survived = _replay_and_kill(day, tmp_path, workers=2, successor=False, kill_at=1)
    _assert_same_tables(survived, one_by_one)


def test_a_backlog_after_a_paused_worker_changes_nothing(
    day: Path, one_by_one: dict[str, Any], tmp_path: Path
) -> None:
    """The worker is stopped (SIGSTOP) from the first produced lines until the whole file is on
    the broker, then continued: it works through the day as one backlog, at full speed."""
    settings = isolated_settings(tmp_path, "pause", partitions=4, workers=1)
    with embedded_stack(settings) as stack:
        reader = open_reader(stack.settings)
        worker = stack.workers[0]
        paused: list[int] = []

        def pause_while_producing(phase: str, done: int, total: int | None) -> None:
            if phase == "produce" and not paused:
                os.kill(worker.pid, signal.SIGSTOP)
                paused.append(done)
            elif phase == "process" and len(paused) == 1:
                os.kill(worker.pid, signal.SIGCONT)
                paused.append(done)

        try:
            replay(stack.settings, day, reader=reader, check=stack.check, timeout=300,
                   progress=pause_while_producing)  # fmt: skip
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        assert len(paused) == 2 and paused[0] < EVENTS // 10, paused
        after_backlog = _snapshot(reader)
    _assert_same_tables(after_backlog, one_by_one)


def test_in_live_mode_silent_inputs_do_not_hold_time_back(tmp_path: Path) -> None:
    """No replay marker, no more events: the watermark follows the wall clock and expires the journey."""
    settings = isolated_settings(
        tmp_path,
        "live",
        partitions=2,
        workers=1,
        journey_idle_seconds=60,
        watermark_idle_seconds=2,
        allowed_lateness_seconds=60,
    )
    five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    with embedded_stack(settings) as stack:
        reader = open_reader(stack.settings)
        with TouchpointProducer(stack.settings) as producer:
            producer.send(touchpoint(event_id="live-1", occurred_at=five_minutes_ago.isoformat()))
        rows = eventually(
            lambda: query(reader, "SELECT status, touchpoints FROM {db}.journeys"),
            lambda rows: [r["status"] for r in rows] == ["expired"],
            timeout=90,
        )
    assert rows == [{"status": "expired", "touchpoints": 1}]


def test_after_a_replay_its_silence_is_not_live_idleness(tmp_path: Path) -> None:
    """A replay's stack may stay up long after its end (a report, a slow sink): its historical
    journeys must not expire by the wall clock meanwhile. The first live event starts time again,
    and then they expire as in live mode."""
    settings = isolated_settings(
        tmp_path, "settled", partitions=1, workers=1, watermark_idle_seconds=1
    )
    day = tmp_path / "history.jsonl"
    day.write_text(
        json.dumps(touchpoint(event_id="old-1", occurred_at="2026-06-01T10:00:00+00:00")) + "\n"
    )
    with embedded_stack(settings) as stack:
        reader = open_reader(stack.settings)
        replay(stack.settings, day, reader=reader, check=stack.check, timeout=120)
        statuses = "SELECT status FROM {db}.journeys"
        assert [r["status"] for r in query(reader, statuses)] == ["open"]
        # Many idle periods and watermark steps of wall clock: time must stay at the run's end.
        hold_until = time.monotonic() + 15
        while time.monotonic() < hold_until:
            assert [r["status"] for r in query(reader, statuses)] == ["open"]
            time.sleep(0.5)
        with TouchpointProducer(stack.settings) as producer:
            now = datetime.now(UTC).isoformat()
            producer.send(
                touchpoint(event_id="live-1", occurred_at=now, identities={"anonymous_id": "ck-2"})
            )
        eventually(
            lambda: sorted(r["status"] for r in query(reader, statuses)),
            lambda seen: seen == ["expired", "open"],
            timeout=90,
        )
