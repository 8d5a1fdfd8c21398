from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from parcours.schemas.errors import ConfigError
from parcours.schemas.observe import EVENTS_IN, WATERMARKS, Health, OpsServer, endpoint_url


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_liveness_is_a_heartbeat_and_readiness_asks_the_process() -> None:
    health = Health(stale_after=0.2)
    assert health.live() == (True, "ok")
    assert health.readiness() == (False, "starting")
    health.not_ready = lambda: None
    assert health.readiness() == (True, "ok")
    time.sleep(0.3)
    alive, why = health.live()
    assert not alive and "silent" in why
    assert not health.readiness()[0]
    health.beat()
    assert health.readiness() == (True, "ok")


def test_server_answers_the_probes_and_metrics_and_publishes_its_address(tmp_path: Path) -> None:
    health = Health()
    EVENTS_IN.labels("unit").inc(3)
    WATERMARKS.observe("unit", 7, int(time.time() * 1000) - 5000)
    with OpsServer(health, "127.0.0.1", 0, tmp_path, "worker") as server:
        url = endpoint_url(tmp_path, "worker", os.getpid())
        assert url == server.url
        assert _get(f"{url}/healthz") == (200, "ok\n")
        assert _get(f"{url}/readyz") == (503, "starting\n")
        health.not_ready = lambda: None
        assert _get(f"{url}/readyz") == (200, "ok\n")
        status, text = _get(f"{url}/metrics")
        assert status == 200
        assert 'parcours_events_in_total{stage="unit"} 3.0' in text
        lag = [line for line in text.splitlines() if line.startswith("parcours_watermark_lag")]
        assert len(lag) == 1 and 'stage="unit"' in lag[0]
        assert 4.5 < float(lag[0].split()[-1]) < 60
        assert _get(f"{url}/nope")[0] == 404
        info = json.loads((tmp_path / "endpoints" / f"worker-{os.getpid()}.json").read_text())
        assert info["role"] == "worker"
    assert endpoint_url(tmp_path, "worker", os.getpid()) is None


def test_a_port_already_taken_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    with OpsServer(Health(), "127.0.0.1", 0, tmp_path, "sink") as taken:
        port = int(taken.url.rsplit(":", 1)[1])
        with pytest.raises(ConfigError, match="PARCOURS_METRICS_PORT: cannot listen on"):
            OpsServer(Health(), "127.0.0.1", port, tmp_path, "worker")
