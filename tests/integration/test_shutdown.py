"""Whatever kills the command that started a stack, nothing it started keeps running; a worker or
sink whose broker vanished exits on its own, with one line saying why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from parcours.deploy.generate import generate
from parcours.deploy.stack import STATE_FILE, embedded_stack
from parcours.schemas.watchdog import EXIT_BROKER_LOST
from parcours.sinks.backend import rows_of
from parcours.sinks.sqlserver import RemoteBackend, running_endpoint

from tests.integration.conftest import eventually, isolated_settings

pytestmark = pytest.mark.integration


def _parents() -> dict[int, int]:
    """pid → parent pid of every process on the machine."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child its new parent has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone_within(pids: set[int], seconds: float) -> float:
    """Seconds until none of ``pids`` runs; fails with the survivors after ``seconds``."""
    started = time.monotonic()
    survivors = eventually(lambda: {p for p in pids if _running(p)}, lambda s: not s, seconds)
    assert not survivors
    return time.monotonic() - started


def _parcours(*args: str) -> list[str]:
    return [sys.executable, "-m", "parcours.deploy.cli", *args]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}


def _touchpoints_in_clickhouse(data_dir: Path) -> int:
    url = running_endpoint(data_dir)
    if url is None:
        return 0
    try:
        rows = rows_of(
            RemoteBackend(url, "parcours").query("SELECT count() AS n FROM parcours.touchpoints")
        )
    except Exception:  # the sink is still migrating: no answer yet
        return 0
    return int(rows[0]["n"])


def test_sigkill_of_a_replay_mid_run_leaves_no_process_of_its_stack(tmp_path: Path) -> None:
    path = tmp_path / "large.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in generate(30_000, seed=12)))
    data_dir = tmp_path / "killed"
    replay = subprocess.Popen(
        _parcours("replay", str(path), "--data-dir", str(data_dir), "--partitions", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    try:
        # Mid-run: events have gone all the way through, more are on their way.
        eventually(lambda: _touchpoints_in_clickhouse(data_dir), lambda n: n > 0, timeout=240)
        stack = _descendants(replay.pid)
        assert len(stack) >= 3, stack  # broker, worker, sink
    finally:
        replay.kill()
        replay.wait()

    elapsed = _gone_within(stack, 10)
    print(f"stack of {len(stack)} processes gone {elapsed:.1f}s after the replay's SIGKILL")


def test_sigkill_of_parcours_up_leaves_no_process_of_its_stack(tmp_path: Path) -> None:
    data_dir = tmp_path / "up"
    started = subprocess.run(
        _parcours("up", "--data-dir", str(data_dir), "--partitions", "2"),
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(),
    )
    assert started.returncode == 0, started.stderr
    state = json.loads((data_dir / STATE_FILE).read_text())
    supervisor = int(state["pid"])
    stack = _descendants(supervisor)
    assert set(state["children"].values()) <= stack

    os.kill(supervisor, signal.SIGKILL)

    elapsed = _gone_within(stack | {supervisor}, 10)
    print(f"stack of {len(stack)} processes gone {elapsed:.1f}s after the supervisor's SIGKILL")


def test_worker_and_sink_exit_with_one_line_when_the_broker_is_lost(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path, "lost", partitions=1, workers=1, broker_lost_seconds=3)
    with embedded_stack(settings) as stack:
        # The collector stays up without its broker (it answers 503 until Kafka is back).
        survivors = [c for c in stack.children if c.name == "sink" or c.name.startswith("worker")]
        assert len(survivors) == 2
        tansu = next(c for c in stack.children if c.name == "tansu")
        tansu.kill()
        killed = time.monotonic()

        eventually(lambda: [c.name for c in survivors if c.alive()], lambda alive: not alive, 30)
        elapsed = time.monotonic() - killed

        for child in survivors:
            assert child.process.returncode == EXIT_BROKER_LOST, (child.name, child.tail())
            lines = [
                line
                for line in child.log_path.read_text(errors="replace").splitlines()
                if "PARCOURS_BROKER_LOST_SECONDS" in line
            ]
            assert len(lines) == 1, (child.name, child.tail())
            assert f"broker {stack.settings.kafka_bootstrap} lost" in lines[0]
    # The limit, then at most a probe and a pause each.
    assert elapsed < 3 + 6, elapsed
    print(f"worker and sink exited {elapsed:.1f}s after the broker's SIGKILL (limit 3s)")
