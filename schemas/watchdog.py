"""Bounded life for the long-running processes (worker, sink).

A worker or sink exits, with one log line, when the command that started it is gone (the
embedded stack passes its pid) or when the broker has not answered for
``PARCOURS_BROKER_LOST_SECONDS``: retrying forever against a broker that has vanished only burns
a core (README: Faults and hostile input).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]
from parcours.schemas.kafka import client_config
from parcours.schemas.settings import Settings

log = logging.getLogger("parcours.watchdog")

EXIT_BROKER_LOST = 75
"""EX_TEMPFAIL: a supervisor (Kubernetes, systemd) restarts the process once the broker is back."""
EXIT_ORPHANED = 70
ORPHAN_GRACE_SECONDS = 3.0
"""How long an orphan's graceful stop may take before it exits anyway: with its parent gone,
its broker (embedded) is usually gone too, and a graceful stop would wait for it forever."""
PARENT_POLL_SECONDS = 0.2


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def watch(
    settings: Settings, *, name: str, parent_pid: int | None, stop: Callable[[], None]
) -> None:
    """Start the watch threads (daemons). ``stop`` asks the process to stop gracefully."""
    if parent_pid is not None:
        threading.Thread(
            target=_watch_parent, args=(name, parent_pid, stop), name="watch-parent", daemon=True
        ).start()
    threading.Thread(
        target=_watch_broker, args=(settings, name), name="watch-broker", daemon=True
    ).start()


def _watch_parent(name: str, parent_pid: int, stop: Callable[[], None]) -> None:
    # PR_SET_PDEATHSIG already signalled us on most deaths; this also covers a parent that died
    # before the child could ask for it, and a graceful stop that hangs on a dead broker.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    log.error("%s: parent process %d is gone; exiting", name, parent_pid)
    stop()
    time.sleep(ORPHAN_GRACE_SECONDS)
    _exit(EXIT_ORPHANED)


class _Outage(logging.Filter):
    """Holds back the Kafka clients' records while the broker does not answer: they repeat the
    same connection error many times a second, and the watchdog says it once."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.down


QUIET_DURING_OUTAGE = ("aiokafka", "faust", "mode", "librdkafka", "parcours.sinks.consumer")
"""Loggers of the Kafka clients (``librdkafka``: where the sink's consumer sends its log)."""


def _hold_back_during(outage: _Outage) -> None:
    # A filter applies to the records of the logger it is on, not to its children's.
    names = [*logging.root.manager.loggerDict, *QUIET_DURING_OUTAGE]
    for name in names:
        if name.startswith(QUIET_DURING_OUTAGE):
            logging.getLogger(name).addFilter(outage)


def _watch_broker(settings: Settings, name: str) -> None:
    limit = settings.broker_lost_seconds
    probe_timeout = max(0.5, min(2.0, limit / 4))
    # librdkafka's own log would repeat every failed connection: the one line below says it all.
    admin = AdminClient(client_config(settings) | {"log_level": 0})
    outage = _Outage()
    _hold_back_during(outage)
    last_answer = time.monotonic()
    while True:
        try:
            admin.list_topics(timeout=probe_timeout)
        except KafkaException:
            outage.down = True
            silent = time.monotonic() - last_answer
            if silent >= limit:
                log.error(
                    "%s: broker %s lost: no answer for %.0fs (PARCOURS_BROKER_LOST_SECONDS=%g); "
                    "exiting with code %d",
                    name,
                    settings.kafka_bootstrap,
                    silent,
                    limit,
                    EXIT_BROKER_LOST,
                )
                _exit(EXIT_BROKER_LOST)
        else:
            if outage.down:
                outage.down = False
                log.warning(
                    "%s: broker %s answers again after %.0fs",
                    name,
                    settings.kafka_bootstrap,
                    time.monotonic() - last_answer,
                )
            last_answer = time.monotonic()
        time.sleep(min(1.0, limit / 4))
