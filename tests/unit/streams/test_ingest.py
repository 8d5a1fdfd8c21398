from __future__ import annotations

from parcours.schemas.codec import Codec
from parcours.schemas.records import Source, marker_record
from parcours.schemas.sdk import Guard, hash_email, hash_phone, parse_touchpoint
from parcours.streams.ingest import DeadLetter, EndOfRun, Forward, Ingest

from tests.factories import touchpoint

SOURCE = Source("touchpoints", 3, 1234, 1_795_510_800_000)
EVENT = touchpoint(
    channel="store",
    action="store_visit",
    identities={"loyalty_id": "loy-1", "device_id": "d-1"},
)


def test_valid_touchpoint_is_forwarded_keyed_by_its_routing_identity() -> None:
    codec = Codec()
    outcome = Ingest(codec).process(
        codec.encode("Touchpoint", parse_touchpoint(EVENT).to_avro()), SOURCE
    )
    assert isinstance(outcome, Forward)
    assert outcome.key == b"loyalty_id:loy-1"
    resolved = codec.decode_as("ResolvedTouchpoint", outcome.value)
    assert resolved["touchpoint"]["event_id"] == "e-1"
    assert (resolved["source_partition"], resolved["source_offset"]) == (3, 1234)


def test_garbage_is_dead_lettered_with_its_bytes_and_position() -> None:
    codec = Codec()
    outcome = Ingest(codec).process(b"\x00\x01garbage", SOURCE)
    assert isinstance(outcome, DeadLetter)
    record = codec.decode_as("DeadLetter", outcome.value)
    assert record["payload"] == b"\x00\x01garbage"
    assert (record["stage"], record["topic"], record["partition"], record["offset"]) == (
        "worker",
        "touchpoints",
        3,
        1234,
    )
    assert "not a parcours Avro record" in record["reason"]


def test_avro_that_breaks_the_contract_is_dead_lettered_naming_the_field() -> None:
    codec = Codec()
    record = parse_touchpoint(EVENT).to_avro() | {
        "identities": {"email_sha256": "jane@example.com"}
    }
    outcome = Ingest(codec).process(codec.encode("Touchpoint", record), SOURCE)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason.startswith("identities: email_sha256")


def test_a_record_of_another_type_does_not_belong_on_touchpoints() -> None:
    codec = Codec()
    value = codec.encode(
        "DeadLetter", {"stage": "x", "reason": "y", "payload": b"", "received_at": 0}
    )
    outcome = Ingest(codec).process(value, SOURCE)
    assert isinstance(outcome, DeadLetter)
    assert "does not belong on touchpoints" in outcome.reason


def test_marker_is_passed_on_with_this_partition() -> None:
    codec = Codec()
    ingest = Ingest(codec)
    outcome = ingest.process(codec.encode("Marker", marker_record("run-1", 3, 4, None)), SOURCE)
    assert isinstance(outcome, EndOfRun)
    forwarded = ingest.worker_marker(outcome.marker, SOURCE)
    assert forwarded == {
        "run_id": "run-1",
        "stage": "ingest",
        "source_partition": 3,
        "source_partitions": 4,
        "watermark": None,
        "begins": False,
    }


PII = {"contact": "Jane.Doe@Example.com", "mobile": "+33 6 12 34 56 78"}


def _written_without_the_sdk(codec: Codec) -> bytes:
    return codec.encode("Touchpoint", parse_touchpoint(EVENT | {"attributes": PII}).to_avro())


def test_personal_data_written_without_the_sdk_is_redacted_before_it_goes_on() -> None:
    codec = Codec()
    ingest = Ingest(codec, Guard(max_event_bytes=262_144, pii_policy="redact"))
    outcome = ingest.process(_written_without_the_sdk(codec), SOURCE)
    assert isinstance(outcome, Forward)
    resolved = codec.decode_as("ResolvedTouchpoint", outcome.value)
    assert resolved["touchpoint"]["attributes"] == {
        "contact": hash_email("jane.doe@example.com"),
        "mobile": hash_phone("+33612345678"),
    }


def test_reject_dead_letters_the_event_redacted() -> None:
    codec = Codec()
    ingest = Ingest(codec, Guard(max_event_bytes=262_144, pii_policy="reject"))
    outcome = ingest.process(_written_without_the_sdk(codec), SOURCE)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason.startswith("attributes.contact: looks like an e-mail address")
    payload = codec.decode_as("DeadLetter", outcome.value)["payload"]
    assert b"Jane" not in payload
    assert codec.decode_as("Touchpoint", payload)["attributes"]["contact"] == hash_email(
        "jane.doe@example.com"
    )
