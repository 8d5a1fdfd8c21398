"""The SDK's guard: the size limit of one event and the PII policy, the same for every way in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parcours.schemas.errors import ValidationError
from parcours.schemas.pii import redact
from parcours.schemas.sdk import Guard, hash_email, hash_phone, parse_touchpoint
from prometheus_client import REGISTRY

from tests.factories import touchpoint
from tests.unit.schemas.test_pii import emails, phones

REDACT = Guard(max_event_bytes=4096, pii_policy="redact")
REJECT = Guard(max_event_bytes=4096, pii_policy="reject")
ISSUE_ATTRIBUTES = {"contact": "Jane.Doe@Example.com", "mobile": "+33 6 12 34 56 78"}


def _redacted(field: str) -> float:
    value = REGISTRY.get_sample_value("parcours_pii_redacted_total", {"field": field})
    return value or 0.0


def test_a_document_over_the_limit_is_refused_before_it_is_parsed() -> None:
    line = json.dumps(touchpoint(attributes={"blob": "x" * 5000}))
    with pytest.raises(ValidationError) as caught:
        parse_touchpoint(line, REDACT)
    assert str(caught.value) == (
        f"event: {len(line):,} bytes is over the limit of 4,096 (PARCOURS_MAX_EVENT_BYTES)"
    )
    # Not JSON at all: the size is what is wrong with it first.
    with pytest.raises(ValidationError, match="over the limit"):
        parse_touchpoint(b"{" * 5000, REDACT)


def test_a_document_at_the_limit_passes() -> None:
    line = json.dumps(touchpoint(attributes={"blob": ""}))
    padded = json.dumps(touchpoint(attributes={"blob": "x" * (4096 - len(line))}))
    assert len(padded) == 4096
    assert parse_touchpoint(padded, REDACT).attributes["blob"].startswith("x")


def test_redact_replaces_each_value_by_the_hash_of_its_normalised_form() -> None:
    before = _redacted("attributes.contact"), _redacted("attributes.mobile")
    event = parse_touchpoint(json.dumps(touchpoint(attributes=ISSUE_ATTRIBUTES)), REDACT)
    assert event.attributes == {
        "contact": hash_email("jane.doe@example.com"),
        "mobile": hash_phone("+33612345678"),
    }
    after = _redacted("attributes.contact"), _redacted("attributes.mobile")
    assert after == (before[0] + 1, before[1] + 1)


def test_redact_reaches_ids_topics_nested_fields_and_attribute_names() -> None:
    event = parse_touchpoint(
        touchpoint(
            event_id="signup:jane@example.com",
            identities={"crm_id": "jane@example.com", "email_sha256": hash_email("j@x.io")},
            contact={"case_id": "k-1", "topic": "call me back on 06 12 34 56 78"},
            cart={
                "cart_id": "c-1",
                "items": [{"sku": "jane@example.com", "quantity": 1, "unit_price": 1}],
            },
            attributes={"jane@example.com": "subscribed"},
        ),
        REDACT,
    )
    digest = hash_email("jane@example.com")
    assert event.event_id == f"signup:{digest}"
    assert event.identities == {"crm_id": digest, "email_sha256": hash_email("j@x.io")}
    assert event.contact is not None and event.contact.topic is not None
    assert "06 12 34 56 78" not in event.contact.topic
    assert event.cart is not None and event.cart.items[0].sku == digest
    assert event.attributes == {digest: "subscribed"}
    assert _redacted("attributes(name)") >= 1 and _redacted("cart.items.sku") >= 1


def test_reject_names_the_field_and_never_repeats_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_touchpoint(touchpoint(attributes=ISSUE_ATTRIBUTES), REJECT)
    message = str(caught.value)
    assert message.startswith("attributes.contact: looks like an e-mail address")
    assert "PARCOURS_PII_POLICY=reject" in message
    assert "Jane" not in message


def test_ordinary_events_pass_unchanged() -> None:
    data = touchpoint(
        event_id="ord-000123",
        cart={"cart_id": "c-88", "items": [], "value": 49.0, "currency": "EUR"},
        attributes={
            "timezone": "Europe/Paris",
            "url": "/cart",
            "sent": "2026-11-24T10:02:11+01:00",
        },
    )
    assert parse_touchpoint(data, REJECT) == parse_touchpoint(data)


def test_without_a_guard_only_the_contract_is_checked() -> None:
    event = parse_touchpoint(touchpoint(attributes=ISSUE_ATTRIBUTES))
    assert event.attributes == ISSUE_ATTRIBUTES


def test_an_escaped_character_does_not_hide_an_address() -> None:
    line = json.dumps(touchpoint(attributes={"contact": "jane@example.com"})).replace(
        "@", "\\u0040"
    )
    assert "@" not in line
    event = parse_touchpoint(line, REDACT)
    assert event.attributes == {"contact": hash_email("jane@example.com")}


_values = st.one_of(
    emails(),
    phones(),
    st.text(max_size=40),
    st.builds(
        lambda a, v, b: f"{a}\n{v}\t{b}",
        st.text(max_size=10),
        emails() | phones(),
        st.text(max_size=10),
    ),
)


@settings(max_examples=300)
@given(_values, st.booleans())
def test_a_document_is_redacted_exactly_as_its_values_are(value: str, ascii_only: bool) -> None:
    """The scan of the whole document that clears most events never lets a value through that a
    scan of the value itself would catch."""
    line = json.dumps(touchpoint(attributes={"note": value}), ensure_ascii=ascii_only)
    assert parse_touchpoint(line, REDACT).attributes == {"note": redact(value)}
