"""What an operator sees (README: Operating it): each worker's and the sink's /metrics,
/healthz and /readyz, at the address they write to DATA_DIR/endpoints, against a small replay."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from parcours.deploy.generate import generate
from parcours.deploy.replay import replay
from parcours.deploy.stack import Stack
from parcours.schemas.observe import endpoint_url
from parcours.sinks.backend import Backend
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import query

pytestmark = pytest.mark.integration
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _scrape(base: str) -> Samples:
    status, text = _get(f"{base}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _endpoints(stack: Stack) -> tuple[str, str]:
    data_dir = stack.settings.data_dir
    (worker,) = stack.workers
    (sink,) = [child for child in stack.children if child.name == "sink"]
    worker_url = endpoint_url(data_dir, "worker", worker.pid)
    sink_url = endpoint_url(data_dir, "sink", sink.pid)
    assert worker_url is not None and sink_url is not None
    return worker_url, sink_url


def test_metrics_count_what_a_replay_sent_and_both_are_ready(
    stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    worker, sink = _endpoints(stack)
    for base in (worker, sink):
        assert _get(f"{base}/healthz") == (200, "ok\n")
        assert _get(f"{base}/readyz") == (200, "ok\n")
    seed = random.randrange(10**6)
    events = list(generate(300, seed=seed))
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    before_worker, before_sink = _scrape(worker), _scrape(sink)

    result = replay(stack.settings, path, reader=reader, timeout=300)

    after_worker, after_sink = _scrape(worker), _scrape(sink)

    def worker_delta(name: str, **labels: str) -> float:
        return _value(after_worker, name, **labels) - _value(before_worker, name, **labels)

    def sink_delta(name: str, **labels: str) -> float:
        return _value(after_sink, name, **labels) - _value(before_sink, name, **labels)

    assert result.accepted == len(events) and result.rejected == 0
    for stage in ("ingest", "identity", "journey"):
        assert worker_delta("parcours_events_in_total", stage=stage) == len(events), stage
    assert worker_delta("parcours_events_out_total", stage="ingest") == len(events)
    assert worker_delta("parcours_events_out_total", stage="identity") == len(events)
    assert worker_delta("parcours_dead_letters_total", stage="ingest") == 0
    stitched = worker_delta("parcours_events_out_total", stage="journey")
    assert stitched >= len(events)  # a merge re-sends the touchpoints it moved
    # Every stitched record the journey stage sent is a row the sink wrote.
    assert sink_delta("parcours_sink_rows_written_total", table="touchpoint_versions") == stitched
    assert sink_delta("parcours_dead_letters_total", stage="sink") == 0
    assert sink_delta("parcours_sink_batch_seconds_count") >= 1
    rows = query(
        reader,
        "SELECT uniqExact(event_id) AS n FROM {db}.touchpoints "
        f"WHERE event_id LIKE 'ev-{seed}-%'",
    )
    assert int(rows[0]["n"]) == len({event["event_id"] for event in events})
    stages = {labels for name, labels in after_worker if name == "parcours_watermark_lag_seconds"}
    assert {dict(labels)["stage"] for labels in stages} == {"ingest", "identity", "journey"}
    assert any(name == "parcours_consumer_lag" for name, _ in after_worker)
    assert any(name == "parcours_consumer_lag" for name, _ in after_sink)
    assert _get(f"{worker}/readyz")[0] == 200 and _get(f"{sink}/readyz")[0] == 200
