"""Fuzzing the two ways in: whatever a channel sends, the SDK accepts it or rejects it with a
reason naming a field, and the worker's ingest forwards it or dead-letters it; nothing raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parcours.schemas.codec import Codec
from parcours.schemas.errors import ValidationError
from parcours.schemas.records import Source
from parcours.schemas.sdk import Guard, Touchpoint, parse_touchpoint
from parcours.streams.ingest import DeadLetter, EndOfRun, Forward, Ingest

from tests.factories import touchpoint

GUARD = Guard(max_event_bytes=4096, pii_policy="redact")
SOURCE = Source("touchpoints", 0, 7, 1_795_510_800_000)
CODEC = Codec()
VALID = touchpoint(
    channel="web",
    action="add_to_cart",
    identities={"anonymous_id": "a-1"},
    cart={
        "cart_id": "c-1",
        "items": [{"sku": "s-1", "quantity": 1, "unit_price": 10.0}],
        "value": 10.0,
        "currency": "EUR",
    },
)
GOOD_AVRO = CODEC.encode("Touchpoint", parse_touchpoint(VALID).to_avro())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _parsed(line: str | bytes | dict[str, Any]) -> Touchpoint | str:
    """The touchpoint, or the rejection's reason; any other exception fails the test."""
    try:
        return parse_touchpoint(line, GUARD)
    except ValidationError as exc:
        reason = str(exc)
        assert reason, "a rejection must say why"
        return reason


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_line_is_accepted_or_rejected_with_a_reason(line: str | bytes) -> None:
    _parsed(line)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(sorted(VALID)) | st.text(max_size=12),
    value=json_values,
    as_text=st.booleans(),
)
def test_a_valid_event_with_one_field_changed_is_accepted_or_its_field_named(
    field: str, value: Any, as_text: bool
) -> None:
    event = dict(VALID, **{field: value})
    outcome = _parsed(json.dumps(event) if as_text else event)
    if isinstance(outcome, str) and field in VALID:
        assert field in outcome or "event" in outcome


def _ingested(value: bytes) -> Forward | DeadLetter | EndOfRun:
    outcome = Ingest(CODEC, GUARD).process(value, SOURCE)
    if isinstance(outcome, DeadLetter):
        assert outcome.reason
        assert CODEC.decode_as("DeadLetter", outcome.value)["offset"] == SOURCE.offset
    return outcome


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_on_the_topic_are_forwarded_or_dead_lettered(value: bytes) -> None:
    _ingested(value)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=0, max_value=len(GOOD_AVRO)),
    flips=st.lists(st.tuples(st.integers(0, len(GOOD_AVRO) - 1), st.integers(1, 255)), max_size=4),
)
def test_damaged_avro_is_forwarded_or_dead_lettered(cut: int, flips: list[tuple[int, int]]) -> None:
    damaged = bytearray(GOOD_AVRO)
    for at, mask in flips:
        damaged[at] ^= mask
    outcome = _ingested(bytes(damaged[: max(cut, 1)] if cut < len(GOOD_AVRO) else damaged))
    if not flips and cut == len(GOOD_AVRO):
        assert isinstance(outcome, Forward)
