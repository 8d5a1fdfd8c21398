"""Produce with the SDK → Kafka → worker → sink → rows analysts see."""

from __future__ import annotations

import uuid

import pytest
from parcours.deploy.stack import Stack
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.producer import TouchpointProducer
from parcours.schemas.sdk import hash_email, parse_touchpoint
from parcours.sinks.backend import Backend

from tests.integration.conftest import eventually, query

pytestmark = pytest.mark.integration


def _event(event_id: str, **changes: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "occurred_at": "2026-11-24T10:00:00+01:00",
        "channel": "web",
        "action": "add_to_cart",
        "identities": {
            "anonymous_id": f"ck-{event_id}",
            "email_sha256": hash_email(f"{event_id}@example.com"),
        },
        "cart": {
            "cart_id": f"cart-{event_id}",
            "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 10.5}],
            "value": 21.0,
            "currency": "EUR",
        },
        "attributes": {"timezone": "Europe/Paris"},
    } | changes


def test_produced_touchpoints_become_rows(stack: Stack, reader: Backend) -> None:
    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{n}" for n in range(3)]
    with TouchpointProducer(stack.settings) as producer:
        for event_id in ids:
            producer.send(_event(event_id))
        producer.send(
            _event(
                f"{prefix}-store",
                channel="store",
                action="store_visit",
                identities={"loyalty_id": "loy-1"},
                cart=None,
            )
        )
    assert producer.delivered == 4
    rows = eventually(
        lambda: query(
            reader,
            f"SELECT event_id, channel, action, routing_key, cart_id, cart_value, cart_items, occurred_at FROM {{db}}.touchpoints WHERE event_id LIKE '{prefix}-%' ORDER BY event_id",
        ),
        lambda rows: len(rows) == 4,
    )
    assert rows[0] == {
        "event_id": f"{prefix}-0",
        "channel": "web",
        "action": "add_to_cart",
        "routing_key": f"email_sha256:{hash_email(f'{prefix}-0@example.com')}",
        "cart_id": f"cart-{prefix}-0",
        "cart_value": 21.0,
        "cart_items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 10.5}],
        "occurred_at": "2026-11-24 09:00:00.000",
    }
    assert rows[3]["channel"] == "store"
    assert rows[3]["routing_key"] == "loyalty_id:loy-1"


def test_bad_bytes_are_dead_lettered_and_the_worker_keeps_consuming(
    stack: Stack, reader: Backend
) -> None:
    prefix = uuid.uuid4().hex[:8]
    codec = Codec()
    wrong_type = codec.encode(
        "Marker",
        {
            "run_id": "x",
            "stage": "producer",
            "source_partition": 0,
            "source_partitions": 1,
            "watermark": None,
        },
    )[:-3]
    valid = codec.encode("Touchpoint", parse_touchpoint(_event(f"{prefix}-ok")).to_avro())
    breaks_contract = codec.encode(
        "Touchpoint",
        parse_touchpoint(_event(f"{prefix}-bad")).to_avro()
        | {"identities": {"email_sha256": "jane@example.com"}},
    )
    garbage = f"garbage {prefix}".encode() + b"\xff\x00"
    topic = stack.settings.topic(topics.TOUCHPOINTS)
    with TouchpointProducer(stack.settings) as producer:
        for value in (garbage, wrong_type, breaks_contract, valid):
            producer.produce(topic, b"same-key", value)

    touchpoint = eventually(
        lambda: query(
            reader, f"SELECT event_id FROM {{db}}.touchpoints WHERE event_id = '{prefix}-ok'"
        ),
        lambda rows: len(rows) == 1,
    )
    assert touchpoint == [{"event_id": f"{prefix}-ok"}]
    sent = [value.hex().upper() for value in (garbage, wrong_type, breaks_contract)]
    wanted = ", ".join(f"'{h}'" for h in sent)
    dead = eventually(
        lambda: query(
            reader,
            "SELECT stage, reason, hex(payload) AS payload_hex, topic, partition, offset "
            f"FROM {{db}}.dead_letters WHERE hex(payload) IN ({wanted}) ORDER BY offset",
        ),
        lambda rows: len(rows) == 3,
    )
    assert [row["payload_hex"] for row in dead] == sent
    assert {row["stage"] for row in dead} == {"worker"}
    assert {row["topic"] for row in dead} == {topic}
    assert len({row["partition"] for row in dead}) == 1
    offsets = [row["offset"] for row in dead]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    assert "not a parcours Avro record" in dead[0]["reason"]
    assert "corrupt Avro body" in dead[1]["reason"]
    assert dead[2]["reason"].startswith("identities: email_sha256 must be a lower-case sha256")
