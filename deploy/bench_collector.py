"""``parcours bench-collector``: events/s the HTTP collector accepts on the embedded stack.

Accepted means validated by the SDK and acknowledged by Kafka (the collector answers only then).
The clients are threads of this process with one keep-alive connection each, posting bodies
serialised beforehand, so the client side costs little of the CPU the collector needs; the
workers and the sink run as usual (they consume what the collector produces).
"""

from __future__ import annotations

import http.client
import json
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from parcours.deploy.bench import machine
from parcours.deploy.collector import running_collector
from parcours.deploy.generate import generate
from parcours.deploy.stack import embedded_stack
from parcours.schemas.errors import StackError
from parcours.schemas.settings import Settings
from pydantic import SecretStr

KEY = "bench-write-key"


def bodies(events: int, batch: int) -> list[bytes]:
    generated = list(generate(events, seed=23))
    return [
        json.dumps({"batch": generated[i : i + batch]}, separators=(",", ":")).encode()
        for i in range(0, len(generated), batch)
    ]


class Client(threading.Thread):
    """Posts its bodies one after the other; on 429/503 waits Retry-After and posts again."""

    def __init__(self, url: str, work: list[bytes]) -> None:
        super().__init__(daemon=True)
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.work = work
        self.accepted = self.rejected = self.retries = 0
        self.latencies: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        try:
            for body in self.work:
                while True:
                    started = time.perf_counter()
                    connection.request("POST", "/v1/touchpoints", body, headers)
                    response = connection.getresponse()
                    answer = json.loads(response.read())
                    self.latencies.append(time.perf_counter() - started)
                    if response.status in (429, 503):
                        self.retries += 1
                        time.sleep(float(response.getheader("Retry-After") or 1))
                        continue
                    if response.status != 200:
                        raise StackError(f"collector answered {response.status}: {answer}")
                    self.accepted += answer["accepted"]
                    self.rejected += len(answer["rejected"])
                    break
        except Exception as exc:
            self.error = repr(exc)
        finally:
            connection.close()


def bench_collector(settings: Settings, events: int, clients: int, batch: int) -> dict[str, Any]:
    work = bodies(events, batch)
    with tempfile.TemporaryDirectory(prefix="parcours-bench-collector-") as tmp:
        run = settings.model_copy(
            update={"data_dir": Path(tmp), "collector_keys": SecretStr(f"bench:{KEY}")}
        )
        with embedded_stack(run) as stack:
            url = running_collector(stack.settings.data_dir)
            if url is None:
                raise StackError("the collector did not publish its address")
            threads = [Client(url, work[i::clients]) for i in range(clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
    errors = [t.error for t in threads if t.error]
    if errors:
        raise StackError(f"a client failed: {errors[0]}")
    accepted = sum(t.accepted for t in threads)
    latencies = sorted(x for t in threads for x in t.latencies)
    return {
        "machine": machine(),
        "events": events,
        "clients": clients,
        "batch": batch,
        "accepted": accepted,
        "rejected": sum(t.rejected for t in threads),
        "retries": sum(t.retries for t in threads),
        "seconds": round(seconds, 2),
        "accepted_per_second": round(accepted / seconds),
        "request_ms": {
            "p50": round(latencies[len(latencies) // 2] * 1000, 1),
            "p95": round(latencies[int(len(latencies) * 0.95)] * 1000, 1),
        },
    }
