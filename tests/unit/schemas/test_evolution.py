"""Contract v1.1 (``feedback``, the ``order`` of a return) against the v1 it replaces: readers of v1
read new events, the new reader reads old ones (fastavro's schema resolution), and records that
v1 writers left on topics and in state still decode by their fingerprint."""

from __future__ import annotations

import io
import json
from importlib import resources
from typing import Any

import fastavro
import pytest
from parcours.schemas.codec import Codec
from parcours.schemas.errors import ValidationError
from parcours.schemas.registry import load_shipped
from parcours.schemas.sdk import parse_touchpoint

from tests.factories import touchpoint

V1_FINGERPRINTS = {"Touchpoint": "7e67b7b8b286a4c9", "ResolvedTouchpoint": "15464fea7b7bdaf2"}
"""What the v1 schemas put on the wire (computed from the v1 .avsc before the change)."""

FEEDBACK = touchpoint(
    event_id="fb-1",
    channel="email",
    action="feedback",
    feedback={"scale": "csat", "score": 4, "order_id": "o-1", "comment": "quick delivery"},
)
RETURN = touchpoint(
    event_id="rt-1",
    channel="store",
    action="return_requested",
    order={"order_id": "o-1", "value": 100.0, "currency": "EUR"},
)


def _v1(name: str) -> Any:
    text = resources.files("parcours.schemas").joinpath(f"avro/history/{name}.1.avsc").read_text()
    return fastavro.parse_schema(json.loads(text), named_schemas={})


def _current(name: str) -> Any:
    return load_shipped().by_name(name).parsed


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, record)
    return body.getvalue()


def _read(data: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    record: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(data), writer, reader)
    return record


def test_the_history_holds_v1_as_it_was_on_the_wire() -> None:
    store = load_shipped()
    for name, fingerprint in V1_FINGERPRINTS.items():
        writer = store.by_fingerprint(bytes.fromhex(fingerprint))
        assert writer is not None and writer.name == f"io.parcours.v1.{name}"
        assert store.by_name(name).fingerprint.hex() != fingerprint  # the reader is v1.1


def test_a_v1_reader_reads_a_feedback_event_without_its_new_field() -> None:
    record = parse_touchpoint(FEEDBACK).to_avro()
    old = _read(_write(_current("Touchpoint"), record), _current("Touchpoint"), _v1("touchpoint"))
    assert "feedback" not in old
    assert (old["event_id"], old["action"], old["channel"]) == ("fb-1", "feedback", "email")


def test_the_new_reader_reads_a_v1_event_with_no_feedback() -> None:
    record = parse_touchpoint(touchpoint(event_id="old-1")).to_avro()
    record.pop("feedback")
    new = _read(_write(_v1("touchpoint"), record), _v1("touchpoint"), _current("Touchpoint"))
    assert new["feedback"] is None and new["event_id"] == "old-1"


def test_a_return_carries_its_order_in_both_versions() -> None:
    record = parse_touchpoint(RETURN).to_avro()
    record.pop("feedback")
    written_by_v1 = _write(_v1("touchpoint"), record)
    new = _read(written_by_v1, _v1("touchpoint"), _current("Touchpoint"))
    assert new["order"] == {"order_id": "o-1", "cart_id": None, "value": 100.0, "currency": "EUR"}


def test_the_codec_decodes_what_a_v1_writer_left_on_a_topic() -> None:
    """Single-object framing with the v1 fingerprint, as a not yet upgraded producer sends it."""
    record = parse_touchpoint(touchpoint(event_id="old-2")).to_avro()
    record.pop("feedback")
    framed = b"\xc3\x01" + bytes.fromhex(V1_FINGERPRINTS["Touchpoint"])
    name, decoded = Codec().decode(framed + _write(_v1("touchpoint"), record))
    assert name == "io.parcours.v1.Touchpoint"
    assert decoded["event_id"] == "old-2" and decoded["feedback"] is None


def test_a_feedback_event_round_trips_through_the_codec() -> None:
    codec = Codec()
    _, decoded = codec.decode(codec.encode("Touchpoint", parse_touchpoint(FEEDBACK).to_avro()))
    assert decoded["feedback"] == {
        "scale": "csat",
        "score": 4,
        "order_id": "o-1",
        "case_id": None,
        "comment": "quick delivery",
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"feedback": None}, "feedback: required when action is 'feedback'"),
        ({"feedback": {"scale": "csat", "score": 0}}, "csat scores go from 1 to 5, not 0"),
        ({"feedback": {"scale": "nps", "score": 11}}, "nps scores go from 0 to 10, not 11"),
        ({"feedback": {"scale": "ces", "score": 3}}, "scale: must be one of csat, nps"),
        ({"action": "page_view"}, "feedback: required when action is 'feedback', and only then"),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_touchpoint(FEEDBACK | change)


def test_a_return_without_its_order_is_refused() -> None:
    with pytest.raises(ValidationError, match="order: required when action is 'return_requested'"):
        parse_touchpoint({k: v for k, v in RETURN.items() if k != "order"})
