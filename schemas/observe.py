"""What workers and the sink expose to operators (README: Operating it): Prometheus metrics on
``/metrics``, liveness on ``/healthz``, readiness on ``/readyz``, from a small HTTP server thread.

A thread of its own (not faust's aiohttp web server) so one implementation serves both the faust
worker and the sink, which runs no event loop. A thread would answer even while the process's
main loop is stuck, so liveness is a heartbeat: the loop calls :meth:`Health.beat` and
``/healthz`` fails once it has not for ``stale_after`` seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from parcours.schemas.errors import ConfigError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

EVENTS_IN = Counter(
    "parcours_events_in", "Touchpoint events a stage took in (the sink: messages)", ["stage"]
)
EVENTS_OUT = Counter(
    "parcours_events_out", "Touchpoint events a stage passed on (the sink: rows written)", ["stage"]
)
DEAD_LETTERS = Counter("parcours_dead_letters", "Records a stage dead-lettered", ["stage"])
CONSUMER_LAG = Gauge(
    "parcours_consumer_lag",
    "Messages between a partition's end and this process's position in it",
    ["topic", "partition"],
)


class WatermarkLag(Collector):
    """``parcours_watermark_lag_seconds``: wall clock minus each task's watermark, computed at
    scrape time so a stuck watermark shows as a growing lag."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, int], int] = {}

    def observe(self, stage: str, partition: int, watermark_ms: int) -> None:
        self.marks[(stage, partition)] = watermark_ms

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "parcours_watermark_lag_seconds",
            "Wall clock minus the task's event-time watermark",
            labels=["stage", "partition"],
        )
        now = time.time()
        for (stage, partition), mark in sorted(self.marks.items()):
            family.add_metric([stage, str(partition)], now - mark / 1000)
        yield family


WATERMARKS = WatermarkLag()
REGISTRY.register(WATERMARKS)


class Health:
    """Liveness from a heartbeat; readiness asks the process (``not_ready``: why not, or None)."""

    def __init__(self, stale_after: float = 60.0) -> None:
        self.stale_after = stale_after
        self.last_beat = time.monotonic()
        self.not_ready: Callable[[], str | None] = lambda: "starting"

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def live(self) -> tuple[bool, str]:
        silent = time.monotonic() - self.last_beat
        if silent > self.stale_after:
            return False, f"main loop silent for {silent:.0f}s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        alive, why = self.live()
        if not alive:
            return False, why
        reason = self.not_ready()
        return reason is None, reason or "ok"


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, why = health.live() if path == "/healthz" else health.readiness()
                self._send(200 if ok else 503, f"{why}\n".encode(), "text/plain")
            else:
                self._send(404, b"/metrics /healthz /readyz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class OpsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (port 0: a free one) and
    writes the address to ``DATA_DIR/endpoints/<role>-<pid>.json`` while it runs."""

    def __init__(self, health: Health, host: str, port: int, data_dir: Path, role: str) -> None:
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(health))
        except OSError as exc:
            raise ConfigError(
                f"PARCOURS_METRICS_HOST/PARCOURS_METRICS_PORT: cannot listen on {host}:{port} "
                f"({exc.strerror}); several processes on one host need port 0 (a free one each)"
            ) from exc
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self.role = role
        self._file = endpoint_file(data_dir, role, os.getpid())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OpsServer:
        self._thread.start()
        self._file.parent.mkdir(parents=True, exist_ok=True)
        self._file.write_text(json.dumps({"role": self.role, "pid": os.getpid(), "url": self.url}))
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.unlink(missing_ok=True)
        self._server.shutdown()
        self._server.server_close()


def endpoint_file(data_dir: Path, role: str, pid: int) -> Path:
    return Path(data_dir) / "endpoints" / f"{role}-{pid}.json"


def endpoint_url(data_dir: Path, role: str, pid: int) -> str | None:
    """The address process ``pid`` (a ``worker`` or the ``sink``) serves its metrics on."""
    try:
        return str(json.loads(endpoint_file(data_dir, role, pid).read_text())["url"])
    except (OSError, ValueError, KeyError):
        return None
