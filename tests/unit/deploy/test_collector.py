"""The collector's request handling: auth, body limits, per-event validation, backpressure
answers, CORS, health and metrics. Kafka is replaced by a recorder of what would be produced
(the integration tests run the same app against the embedded broker)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from parcours.deploy.collector import create_app
from parcours.schemas.codec import Codec
from parcours.schemas.errors import CollectorError, NotAcknowledged, QueueFull
from parcours.schemas.settings import Settings, load_settings
from parcours.sinks.backend import Backend
from parcours.sinks.sqlserver import RemoteBackend
from starlette.testclient import TestClient

from tests.factories import touchpoint

WRITE = {"Authorization": "Bearer web-key"}
READ = {"Authorization": "Bearer agent-key"}


class Recorder:
    """Stands in for the acking producer: keeps the batches, or raises what it is told to."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[tuple[bytes, bytes]]]] = []
        self.fail: CollectorError | None = None

    def __len__(self) -> int:
        return 0

    async def send(self, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        if self.fail is not None:
            raise self.fail
        self.batches.append((topic, messages))

    def close(self) -> None:
        pass


def _no_clickhouse() -> Backend:
    raise AssertionError("this test reads no profile")


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        collector_keys="web:web-key,pos:pos-key",
        profile_keys="agent-key",
        collector_max_events=5,
        collector_max_bytes=4096,
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(settings: Settings, recorder: Recorder) -> Iterator[TestClient]:
    with TestClient(create_app(settings, recorder, _no_clickhouse)) as client:
        yield client


def _produced(recorder: Recorder) -> list[dict[str, Any]]:
    codec = Codec()
    return [codec.decode(value)[1] for _, batch in recorder.batches for _, value in batch]


def test_a_batch_with_bad_events_accepts_the_good_ones_and_names_each_fault(
    client: TestClient, recorder: Recorder
) -> None:
    batch = [
        touchpoint(event_id="good-1"),
        touchpoint(event_id="bad-1", channel="fax"),
        "not an object",
        touchpoint(event_id="bad-2", identities={"email_sha256": "jane@example.com"}),
        touchpoint(event_id="good-2", source="spoofed"),
    ]
    response = client.post("/v1/touchpoints", json={"batch": batch}, headers=WRITE)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert body["rejected"][0]["error"].startswith("channel: ")
    assert body["rejected"][1]["error"] == "event: must be a JSON object"
    assert body["rejected"][2]["error"].startswith("identities: email_sha256 must be")
    produced = _produced(recorder)
    assert [e["event_id"] for e in produced] == ["good-1", "good-2"]
    # The write key decides the source, whatever the event says.
    assert {e["source"] for e in produced} == {"web"}
    assert recorder.batches[0][0] == "touchpoints"


def test_one_touchpoint_object_is_a_batch_of_one(client: TestClient, recorder: Recorder) -> None:
    response = client.post(
        "/v1/touchpoints", json=touchpoint(), headers={"Authorization": "Bearer pos-key"}
    )
    assert response.json() == {"accepted": 1, "rejected": []}
    assert _produced(recorder)[0]["source"] == "pos"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, READ])
def test_posting_needs_a_write_key(client: TestClient, recorder: Recorder, headers: Any) -> None:
    response = client.post("/v1/touchpoints", json=touchpoint(), headers=headers)
    assert response.status_code == 401
    assert "write key" in response.json()["error"]
    assert recorder.batches == []


def test_a_beacon_carries_its_key_in_the_url(client: TestClient, recorder: Recorder) -> None:
    body = json.dumps({"batch": [touchpoint()]})
    response = client.post(
        "/v1/touchpoints?key=web-key", content=body, headers={"Content-Type": "text/plain"}
    )
    assert response.json()["accepted"] == 1


def test_gzip_bodies_are_accepted(client: TestClient, recorder: Recorder) -> None:
    body = gzip.compress(json.dumps({"batch": [touchpoint(), touchpoint()]}).encode())
    response = client.post(
        "/v1/touchpoints", content=body, headers=WRITE | {"Content-Encoding": "gzip"}
    )
    assert response.json()["accepted"] == 2


@pytest.mark.parametrize(
    "body, headers, status, error",
    [
        (b"{nope", {}, 400, "body: not JSON"),
        (b"[1, 2]", {}, 400, "body: must be"),
        (b'{"batch": {"event_id": "x"}}', {}, 400, "batch: must be a list"),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "body: not gzip"),
        (json.dumps({"batch": [touchpoint()] * 6}).encode(), {}, 413, "batch: 6 events"),
        (b" " * 5000, {}, 413, "body: larger than 4096 bytes"),
        # A small gzip that inflates past the limit is stopped at the limit.
        (gzip.compress(b" " * 1_000_000), {"Content-Encoding": "gzip"}, 413, "body: larger"),
    ],
)
def test_bad_requests_are_refused_whole(
    client: TestClient,
    recorder: Recorder,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = client.post("/v1/touchpoints", content=body, headers=WRITE | headers)
    assert response.status_code == status
    assert response.json()["error"].startswith(error)
    assert recorder.batches == []


@pytest.mark.parametrize(
    "fault, status, retry_after",
    [
        (QueueFull("producer queue full", retry_after=1), 429, "1"),
        (NotAcknowledged("Kafka did not acknowledge", retry_after=5), 503, "5"),
    ],
)
def test_backpressure_answers_say_when_to_retry(
    client: TestClient, recorder: Recorder, fault: CollectorError, status: int, retry_after: str
) -> None:
    recorder.fail = fault
    response = client.post("/v1/touchpoints", json={"batch": [touchpoint()]}, headers=WRITE)
    assert response.status_code == status
    assert response.headers["Retry-After"] == retry_after
    assert "accepted" not in response.json()


def test_browsers_may_post_from_another_origin(client: TestClient) -> None:
    preflight = client.options(
        "/v1/touchpoints",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "https://shop.example.com")
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_health_metrics_and_snippet(client: TestClient) -> None:
    client.post("/v1/touchpoints", json={"batch": [touchpoint(), {"x": 1}]}, headers=WRITE)
    assert client.get("/healthz").json()["status"] == "ok"
    metrics = client.get("/metrics").text
    assert 'parcours_collector_events_total{outcome="accepted",source="web"} 1.0' in metrics
    assert 'parcours_collector_events_total{outcome="rejected",source="web"} 1.0' in metrics
    assert 'parcours_collector_requests_total{route="touchpoints",status="200"} 1.0' in metrics
    snippet = client.get("/v1/parcours.js")
    assert snippet.headers["content-type"].startswith("text/javascript")
    assert "crypto.subtle.digest" in snippet.text


@pytest.mark.parametrize("headers", [{}, WRITE, {"Authorization": "Bearer nope"}])
def test_profiles_need_a_read_key(client: TestClient, headers: Any) -> None:
    response = client.get("/v1/profiles/crm_id/C-1", headers=headers)
    assert response.status_code == 401
    assert "read key" in response.json()["error"]


def test_a_plain_email_must_be_one(client: TestClient) -> None:
    response = client.get("/v1/profiles/email/not-an-address", headers=READ)
    assert response.status_code == 400
    assert response.json()["error"] == "not an e-mail address"


def test_an_unknown_identity_type_is_named(client: TestClient) -> None:
    response = client.get("/v1/profiles/shoe_size/42", headers=READ)
    assert response.status_code == 400
    assert response.json()["error"].startswith("identity_type: unknown 'shoe_size' (known: crm_id")


def test_a_clickhouse_that_does_not_answer_gives_503(settings: Settings) -> None:
    def unreachable() -> Backend:
        return RemoteBackend("http://127.0.0.1:9/", "parcours")  # nothing listens on port 9

    with TestClient(create_app(settings, Recorder(), unreachable)) as client:
        response = client.get("/v1/profiles/crm_id/C-1", headers=READ)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"].startswith(
        "ClickHouse did not answer: sink SQL endpoint unreachable"
    )
