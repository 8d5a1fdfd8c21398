"""The HTTP collector and profile API on the embedded stack: the `parcours collect` process the
stack started (DATA_DIR/collector.json), and for the backpressure test the same app served in
this process on a producer whose delivery reports can be held back."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from parcours.deploy.collector import (
    create_app,
    listening_socket,
    reader_for,
    running_collector,
)
from parcours.deploy.delivery import AckingProducer
from parcours.deploy.stack import Stack
from parcours.schemas.sdk import hash_email, hash_phone
from parcours.schemas.settings import Settings
from parcours.sinks.backend import Backend

from tests.factories import touchpoint
from tests.integration.conftest import READ_KEY, TEST_SOURCE, WRITE_KEY, eventually, query

pytestmark = pytest.mark.integration

WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}


@pytest.fixture(scope="module")
def collector(stack: Stack) -> str:
    url = running_collector(stack.settings.data_dir)
    assert url is not None, "the embedded stack starts `parcours collect`"
    return url


def _rows(reader: Backend, ids: list[str]) -> list[dict[str, Any]]:
    quoted = ", ".join(f"'{i}'" for i in ids)
    return query(
        reader,
        "SELECT event_id, channel, action, source, identities FROM {db}.touchpoints "
        f"WHERE event_id IN ({quoted}) ORDER BY event_id",
    )


def _at(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def test_a_batch_lands_its_good_events_and_names_the_bad_ones(
    collector: str, reader: Backend
) -> None:
    run = uuid.uuid4().hex[:8]
    good = [touchpoint(event_id=f"{run}-{n}", occurred_at=_at(1)) for n in range(3)]
    bad = [
        touchpoint(event_id=f"{run}-bad-channel", channel="fax"),
        touchpoint(event_id=f"{run}-bad-pii", identities={"email_sha256": "jane@example.com"}),
    ]
    batch = [good[0], bad[0], good[1], bad[1], good[2]]
    response = httpx.post(f"{collector}/v1/touchpoints", json={"batch": batch}, headers=WRITE)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 3
    assert [(r["index"], r["error"].split(":")[0]) for r in body["rejected"]] == [
        (1, "channel"),
        (3, "identities"),
    ]
    ids = [e["event_id"] for e in good]
    rows = eventually(lambda: _rows(reader, [*ids, *(e["event_id"] for e in bad)]), _has(ids))
    assert [r["event_id"] for r in rows] == ids  # never the bad ones
    assert {r["source"] for r in rows} == {TEST_SOURCE}


def _has(ids: list[str]) -> Any:
    return lambda rows: sorted(r["event_id"] for r in rows) == sorted(ids)


def test_the_profile_of_a_caller_tells_the_whole_story(collector: str, reader: Backend) -> None:
    """Failed on the chatbot, filled a web cart, now calling: the agent sees the case and its
    topic, what failed, the cart and the call, whichever identity they look the caller up by."""
    run = uuid.uuid4().hex[:8]
    email, phone = f"{run}@example.com", "+33 6 12 34 56 78"
    chat, cookie, crm = f"chat-{run}", f"ck-{run}", f"C-{run}"
    item = {"sku": "SKU-9", "quantity": 2, "unit_price": 35.0}
    story = [
        touchpoint(
            event_id=f"{run}-chat",
            occurred_at=_at(30),
            channel="chatbot",
            action="chatbot_fallback",
            identities={"anonymous_id": chat, "email_sha256": hash_email(email)},
            contact={"topic": "delivery"},
        ),
        touchpoint(
            event_id=f"{run}-cart",
            occurred_at=_at(20),
            channel="web",
            action="add_to_cart",
            identities={"anonymous_id": cookie, "email_sha256": hash_email(email)},
            cart={"cart_id": f"cart-{run}", "items": [item], "value": 70.0, "currency": "EUR"},
        ),
        # The caller is known by the phone system: crm id and number, which merges the two.
        touchpoint(
            event_id=f"{run}-call",
            occurred_at=_at(1),
            channel="phone",
            action="contact_started",
            identities={
                "crm_id": crm,
                "phone_sha256": hash_phone(phone),
                "email_sha256": hash_email(email),
            },
            contact={"case_id": f"K-{run}", "topic": "delivery"},
        ),
    ]
    for event in story:  # one request each, as three channel services would send them
        response = httpx.post(f"{collector}/v1/touchpoints", json=event, headers=WRITE)
        assert response.json() == {"accepted": 1, "rejected": []}

    def profile(kind: str, value: str) -> dict[str, Any]:
        response = httpx.get(f"{collector}/v1/profiles/{kind}/{value}", headers=READ)
        return {"status": response.status_code, **response.json()}

    def complete(found: dict[str, Any]) -> bool:
        # Journeys travel on their own topic: wait for them as well as for the touchpoints.
        journeys = found.get("journeys", [])
        done = len(found.get("recent", [])) == 3
        return done and len(journeys) == 1 and journeys[0]["touchpoints"] == 3

    by_phone = eventually(lambda: profile("phone", phone), complete)
    assert [r["event_id"] for r in by_phone["recent"]] == [
        f"{run}-call",
        f"{run}-cart",
        f"{run}-chat",
    ]
    call = by_phone["recent"][0]
    assert call["channel"] == "phone" and call["case"]["case_id"] == f"K-{run}"
    assert by_phone["open_cases"] == [
        {
            "case_id": f"K-{run}",
            "topic": "delivery",
            "channels": ["chatbot", "phone"],
            "last_outcome": "",
            "last_at": call["occurred_at"],
        }
    ]
    assert [(f["channel"], f["action"]) for f in by_phone["failures"]] == [
        ("chatbot", "chatbot_fallback")
    ]
    cart = by_phone["open_cart"]
    assert cart["cart_id"] == f"cart-{run}" and cart["items"] == [item] and cart["value"] == 70.0
    assert by_phone["identities"] == {
        "crm_id": [crm],
        "email_sha256": [hash_email(email)],
        "phone_sha256": [hash_phone(phone)],
        "anonymous_id": sorted([chat, cookie]),
    }
    assert by_phone["journeys"][0]["channels"] == ["chatbot", "web", "phone"]
    # Any identity of the customer gives the same profile, merges followed.
    for kind, value in [("anonymous_id", chat), ("anonymous_id", cookie), ("crm_id", crm)]:
        assert profile(kind, value)["profile_id"] == by_phone["profile_id"]
    assert profile("crm_id", f"nobody-{run}")["status"] == 404


class HeldProducer(AckingProducer):
    """The real producer, whose delivery reports wait while ``held`` is set (a broker that has
    not answered yet): its queue fills up exactly as when Kafka falls behind."""

    def __init__(self, settings: Settings) -> None:
        self.released = threading.Event()
        self.released.set()
        self.holding = threading.Event()
        super().__init__(settings)

    def poll_once(self) -> None:
        if self.released.is_set():
            super().poll_once()
        else:
            self.holding.set()
            self.released.wait(0.1)

    def hold(self) -> None:
        """Returns once the poll thread serves no report until :meth:`release`."""
        self.holding.clear()
        self.released.clear()
        assert self.holding.wait(10), "the delivery-report thread did not stop"

    def release(self) -> None:
        self.released.set()


@contextmanager
def serving(settings: Settings, producer: AckingProducer) -> Iterator[str]:
    sock = listening_socket("127.0.0.1", 0)
    app = create_app(settings, producer, reader_for(settings))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, bool, timeout=20)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_full_producer_queue_answers_429_and_loses_nothing(
    settings: Settings, reader: Backend
) -> None:
    tight = settings.model_copy(update={"collector_queue_messages": 150})
    producer = HeldProducer(tight)
    run = uuid.uuid4().hex[:8]
    first = [touchpoint(event_id=f"{run}-a{n}", occurred_at=_at(1)) for n in range(100)]
    second = [touchpoint(event_id=f"{run}-b{n}", occurred_at=_at(1)) for n in range(100)]
    with serving(tight, producer) as url:
        producer.hold()
        answers: list[httpx.Response] = []
        pending = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{url}/v1/touchpoints", json={"batch": first}, headers=WRITE, timeout=60
                )
            )
        )
        pending.start()
        # len() also counts librdkafka's own events waiting for the held poll.
        eventually(lambda: len(producer), lambda n: n >= 100, timeout=20)
        assert answers == []  # not answered before Kafka acknowledged

        refused = httpx.post(f"{url}/v1/touchpoints", json={"batch": second}, headers=WRITE)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert "queue full" in refused.json()["error"]
        assert len(producer) < 200  # nothing of the refused batch was produced

        producer.release()
        pending.join(30)
        assert answers[0].status_code == 200 and answers[0].json()["accepted"] == 100
        again = httpx.post(f"{url}/v1/touchpoints", json={"batch": second}, headers=WRITE)
        assert again.json() == {"accepted": 100, "rejected": []}
        metrics = httpx.get(f"{url}/metrics").text
        assert 'parcours_collector_requests_total{route="touchpoints",status="429"} 1.0' in metrics

    ids = [e["event_id"] for e in first + second]
    rows = eventually(lambda: _rows(reader, ids), _has(ids), timeout=120)
    assert len(rows) == 200


def test_kafka_that_does_not_answer_in_time_gets_503_and_a_retry_loses_nothing(
    settings: Settings, reader: Backend
) -> None:
    impatient = settings.model_copy(update={"collector_ack_timeout_seconds": 1.0})
    producer = HeldProducer(impatient)
    run = uuid.uuid4().hex[:8]
    batch = [touchpoint(event_id=f"{run}-{n}", occurred_at=_at(1)) for n in range(20)]
    with serving(impatient, producer) as url:
        producer.hold()
        late = httpx.post(f"{url}/v1/touchpoints", json={"batch": batch}, headers=WRITE)
        assert late.status_code == 503
        assert late.headers["Retry-After"] == "5"
        assert "did not acknowledge 20 events" in late.json()["error"]
        producer.release()
        retried = httpx.post(f"{url}/v1/touchpoints", json={"batch": batch}, headers=WRITE)
        assert retried.json()["accepted"] == 20
    ids = [e["event_id"] for e in batch]
    # Sent twice (the first try was delivered after its 503): one row each all the same.
    rows = eventually(lambda: _rows(reader, ids), _has(ids), timeout=120)
    assert len(rows) == 20


def test_the_address_file_has_the_url(stack: Stack, collector: str) -> None:
    info = json.loads((stack.settings.data_dir / "collector.json").read_text())
    assert info["url"] == collector and collector.startswith("http://127.0.0.1:")
    assert httpx.get(f"{collector}/healthz").json()["status"] == "ok"
