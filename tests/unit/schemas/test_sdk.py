from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from parcours.schemas.errors import ValidationError
from parcours.schemas.sdk import hash_email, hash_phone, is_blocklisted, parse_touchpoint

from tests.factories import touchpoint

event = touchpoint


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"event_id": ""}, "event_id"),
        ({"channel": "fax"}, "channel"),
        ({"identities": {}}, "identities"),
        ({"identities": {"shoe_size": "42"}}, "identities"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-11-24T10:00:00"}, "occurred_at"),
        ({"occurred_at": 1_795_510_800}, "occurred_at"),  # seconds sent as milliseconds: 1970
        ({"occurred_at": 10**20}, "occurred_at"),
        ({"sent_at": "2300-01-01T00:00:00Z"}, "sent_at"),
        (
            {"cart": {"cart_id": "c", "items": [{"sku": "A", "quantity": -1, "unit_price": 1}]}},
            "cart.items.0.quantity",
        ),
        ({"contact": {"outcome": "happy"}}, "contact.outcome"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_touchpoint(event(**changes))
    assert str(caught.value).startswith(f"{field}: ")


def test_missing_required_field_is_named() -> None:
    data = event()
    del data["action"]
    with pytest.raises(ValidationError, match=r"^action: Field required"):
        parse_touchpoint(data)


def test_plaintext_email_is_refused() -> None:
    with pytest.raises(
        ValidationError, match="identities: email_sha256 must be a lower-case sha256"
    ):
        parse_touchpoint(event(identities={"email_sha256": "jane@example.com"}))


def test_purchase_needs_an_order() -> None:
    with pytest.raises(ValidationError, match="order: required"):
        parse_touchpoint(event(action="purchase"))


def test_bad_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        parse_touchpoint(b"{not json")


def test_times_accept_offsets_and_epoch_millis() -> None:
    assert parse_touchpoint(event()).occurred_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    millis = parse_touchpoint(event(occurred_at=1_795_510_800_123)).occurred_at
    assert millis == datetime(2026, 11, 24, 9, 0, 0, 123000, tzinfo=UTC)
    assert parse_touchpoint(event(occurred_at="2026-11-24T09:00:00Z")).occurred_at.hour == 9


def test_hash_email_normalises_before_hashing() -> None:
    expected = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert hash_email("  Jane.Doe@Example.COM ") == expected


def test_hash_phone_uses_e164() -> None:
    expected = hashlib.sha256(b"+33612345678").hexdigest()
    assert hash_phone("+33 6 12 34 56 78") == expected
    assert hash_phone("0033 6-12-34-56-78") == expected
    assert hash_phone("06 12 34 56 78", default_country_code="33") == expected
    with pytest.raises(ValidationError, match="country code"):
        hash_phone("06 12 34 56 78")


def test_routing_key_is_the_strongest_usable_identity() -> None:
    tp = parse_touchpoint(event(identities={"anonymous_id": "ck-1", "crm_id": "crm-7"}))
    assert tp.routing_key == "crm_id:crm-7"
    tp = parse_touchpoint(event(identities={"anonymous_id": "ck-1", "crm_id": "undefined"}))
    assert tp.routing_key == "anonymous_id:ck-1"
    tp = parse_touchpoint(event(identities={"device_id": "00000000-0000-0000-0000-000000000000"}))
    assert tp.routing_key == "event:e-1"


@pytest.mark.parametrize(
    "value", ["", "0", "-1", "null", "None", "undefined", "anonymous", "000-000"]
)
def test_blocklisted_values(value: str) -> None:
    assert is_blocklisted(value)


def test_avro_record_round_trip_keeps_everything() -> None:
    tp = parse_touchpoint(event(contact={"case_id": "k", "topic": "returns", "outcome": "failed"}))
    assert parse_touchpoint(tp.to_avro()) == tp
