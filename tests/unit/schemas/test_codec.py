from __future__ import annotations

import copy
import io
import struct
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from parcours.deploy.generate import generate
from parcours.schemas.codec import Codec
from parcours.schemas.errors import SchemaError
from parcours.schemas.registry import AvroSchema, load_shipped
from parcours.schemas.sdk import parse_touchpoint

from tests.factories import touchpoint

EVENT = touchpoint(
    action="add_to_cart",
    identities={"anonymous_id": "ck-1", "crm_id": "crm-9"},
    cart={
        "cart_id": "c1",
        "items": [{"sku": "A", "quantity": 2, "unit_price": 9.5}],
        "value": 19.0,
    },
    attributes={"url": "/cart"},
)


def test_touchpoint_round_trips_through_single_object_encoding() -> None:
    codec = Codec()
    record = parse_touchpoint(EVENT).to_avro()
    data = codec.encode("Touchpoint", record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codec.store.by_name("Touchpoint").fingerprint
    name, decoded = codec.decode(data)
    assert name == "io.parcours.v1.Touchpoint"
    assert decoded["occurred_at"] == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert decoded["cart"]["items"] == [{"sku": "A", "quantity": 2, "unit_price": 9.5}]
    assert decoded["identities"] == {"anonymous_id": "ck-1", "crm_id": "crm-9"}


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a parcours Avro record"),
        (b'{"event_id": 1}', "not a parcours Avro record"),
        (b"\xc3\x01" + b"\x00" * 8 + b"abc", "unknown schema fingerprint"),
    ],
)
def test_undecodable_bytes_raise_schema_error(data: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        Codec().decode(data)


def test_truncated_body_is_a_schema_error_naming_the_schema() -> None:
    codec = Codec()
    data = codec.encode("Touchpoint", parse_touchpoint(EVENT).to_avro())
    with pytest.raises(SchemaError, match=r"corrupt Avro body.*Touchpoint"):
        codec.decode(data[:20])


def test_record_that_does_not_fit_is_refused_on_encode() -> None:
    with pytest.raises(SchemaError, match="does not fit"):
        Codec().encode("Touchpoint", {"event_id": "x"})


def _touchpoint_source(store: Any) -> dict[str, Any]:
    return copy.deepcopy(store.by_name("Touchpoint").source)


def _write(schema: AvroSchema, record: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema.parsed, record)
    return b"\xc3\x01" + schema.fingerprint + body.getvalue()


def test_v1_reader_reads_a_writer_that_added_an_optional_field() -> None:
    store = load_shipped()
    v2 = _touchpoint_source(store)
    v2["fields"].append({"name": "consent_version", "type": ["null", "string"], "default": None})
    writer = store.add(v2, reader=False)
    record = parse_touchpoint(EVENT).to_avro() | {"consent_version": "2026-10"}
    name, decoded = Codec(store).decode(_write(writer, record))
    assert name == "io.parcours.v1.Touchpoint"
    assert "consent_version" not in decoded
    assert decoded["event_id"] == "e-1"


def test_unknown_channel_symbol_falls_back_to_other() -> None:
    store = load_shipped()
    v2 = _touchpoint_source(store)
    channel = next(f for f in v2["fields"] if f["name"] == "channel")
    channel["type"]["symbols"].append("metaverse")
    writer = store.add(v2, reader=False)
    record = parse_touchpoint(EVENT).to_avro() | {"channel": "metaverse"}
    _, decoded = Codec(store).decode(_write(writer, record))
    assert decoded["channel"] == "other"


class InMemoryRegistry:
    """A Schema Registry's two calls the codec makes, kept in a dict."""

    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}

    def register(self, subject: str, schema: AvroSchema) -> int:
        for schema_id, source in self.schemas.items():
            if source == schema.source:
                return schema_id
        self.schemas[len(self.schemas) + 1] = schema.source
        return len(self.schemas)

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        return self.schemas[schema_id]


def test_confluent_framing_when_a_registry_is_configured() -> None:
    registry = InMemoryRegistry()
    codec = Codec(registry=registry)
    data = codec.encode(
        "Touchpoint", parse_touchpoint(EVENT).to_avro(), subject="touchpoints-value"
    )
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5]) == (1,)
    name, decoded = codec.decode(data)
    assert name.endswith("Touchpoint")
    assert decoded["event_id"] == "e-1"
    # a single-object-encoded record still decodes with the same codec
    assert Codec(registry=registry).decode(Codec().encode("Touchpoint", decoded))[1] == decoded


def test_every_shipped_schema_round_trips() -> None:
    codec = Codec()
    now = datetime(2026, 11, 24, tzinfo=UTC)
    samples = {
        "DeadLetter": {
            "stage": "worker",
            "reason": "r",
            "payload": b"\x00\xff",
            "topic": "t",
            "partition": 1,
            "offset": 2,
            "line": None,
            "received_at": now,
        },
        "Marker": {
            "run_id": "r1",
            "stage": "producer",
            "source_partition": 0,
            "source_partitions": 4,
            "watermark": now,
            "begins": False,
        },
        "Journey": {
            "journey_id": "j",
            "profile_id": "p",
            "started_at": now,
            "last_at": now,
            "status": "open",
            "channels": ["web"],
            "touchpoints": 1,
            "pivots": 0,
            "sessions": 1,
            "late_touchpoints": 0,
            "version": 1,
        },
        "IdentityLink": {
            "target": "device_id:d",
            "sender": "crm_id:1",
            "label": "crm_id:1",
            "event_id": "e",
            "occurred_at": 5,
        },
        "RunRound": {"run_id": "r", "round": 2, "task": 1, "active": False, "watermark": now},
        "Watermark": {"source_partition": 3, "watermark": now},
        "Tick": {"task": 3},
        "EpochRound": {"epoch": 7, "round": 1, "task": 2, "frontier": 5, "sent": None},
        "ProfileMerge": {
            "loser": "p-1",
            "survivor": "p-2",
            "identity": "device_id:d",
            "occurred_at": 5,
        },
        "ProfileTransfer": {"loser": "p-1", "survivor": "p-2", "state": b"{}", "occurred_at": 5},
        "IdentityWarning": {
            "warning_id": "w",
            "identity": "device_id:k",
            "crm_id": "crm_id:1",
            "event_id": "e1",
            "occurred_at": now,
        },
        "Pivot": {
            "journey_id": "j",
            "profile_id": "p",
            "occurred_at": now,
            "from_channel": "chatbot",
            "to_channel": "phone",
            "gap_seconds": 60.0,
            "failure_driven": True,
            "failure_event_id": "e0",
            "event_id": "e1",
            "failure_action": "chatbot_fallback",
            "version": 3,
            "retracted": False,
        },
        "Dropoff": {
            "journey_id": "j",
            "profile_id": "p",
            "kind": "abandoned_cart",
            "anchor_event_id": "e",
            "deadline": now,
            "value": 10.0,
            "currency": "EUR",
            "anchor_channel": "web",
            "anchor_at": now,
            "cart_id": "c",
            "case_id": None,
            "followup_id": "f",
            "recovered": True,
            "recovered_at": now,
            "recovered_value": 10.0,
            "recovery_event_id": "e9",
            "version": 4,
            "retracted": False,
        },
        "Followup": {
            "followup_id": "f",
            "profile_id": "p",
            "kind": "abandoned_cart",
            "channel": "email",
            "status": "scheduled",
            "reason": None,
            "send_at": now,
            "expires_at": None,
            "payload": {"cart_id": "c"},
            "journey_id": "j",
            "anchor_event_id": "e",
            "deadline": now,
            "timezone": "Europe/Paris",
            "identities": {"crm_id": ["1"]},
            "version": 4,
        },
        "Handoff": {
            "handoff_id": "h",
            "profile_id": "p",
            "journey_id": "j",
            "event_id": "e2",
            "occurred_at": now,
            "channel": "phone",
            "from_channel": "chatbot",
            "failure_driven": True,
            "failure": {
                "event_id": "e1",
                "occurred_at": now,
                "channel": "chatbot",
                "action": "chatbot_fallback",
                "case_id": "k",
                "topic": "billing",
                "outcome": None,
            },
            "recent": [
                {
                    "event_id": "e1",
                    "occurred_at": now,
                    "channel": "chatbot",
                    "action": "chatbot_fallback",
                    "case_id": "k",
                    "topic": "billing",
                    "outcome": None,
                }
            ],
            "identities": {"crm_id": ["1"]},
            "cart": {
                "cart_id": "c",
                "items": [{"sku": "s", "quantity": 1, "unit_price": 2.5}],
                "value": 2.5,
                "currency": "EUR",
            },
            "case": None,
            "repeat_contacts": 1,
            "repeat_channels": ["chatbot"],
            "version": 4,
            "retracted": False,
        },
    }
    for name, record in samples.items():
        assert codec.decode_as(name, codec.encode(name, record)) == record


def test_internal_records_are_json_that_avro_encodes_the_same_once_decoded() -> None:
    """What the workers send each other is JSON, times as exact epoch ms; a record read back
    from it makes the same Avro bytes on a public topic as the record it was made from."""
    codec = Codec()
    record = {
        "touchpoint": parse_touchpoint(EVENT).to_avro(),
        "profile_id": "p-1",
        "journey_id": None,
        "routing_key": "crm_id:crm-9",
        "produced_at": datetime(2026, 11, 24, 10, 2, 11, 999000, tzinfo=UTC),
        "source_partition": 0,
        "source_offset": 7,
    }
    internal = codec.encode_internal("ResolvedTouchpoint", record)
    assert internal.startswith(b'["io.parcours.v1.ResolvedTouchpoint",')
    name, decoded = codec.decode(internal)
    assert name == "io.parcours.v1.ResolvedTouchpoint"
    assert decoded["produced_at"] == 1795514531999
    assert codec.encode("ResolvedTouchpoint", decoded) == codec.encode("ResolvedTouchpoint", record)
    transfer = {"loser": "a", "survivor": "b", "state": b'{"events":[]}', "occurred_at": 1}
    assert codec.decode(codec.encode_internal("ProfileTransfer", transfer))[1]["state"] == (
        '{"events":[]}'
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'["io.parcours.v1.Tick", {"task": ', "corrupt internal record"),
        (b'["io.parcours.v1.Tick", 3]', "not \\[name, record\\]"),
        (b'["io.parcours.v1.Nothing", {}]', "unknown schema name"),
    ],
)
def test_a_bad_internal_record_is_a_schema_error(data: bytes, error: str) -> None:
    with pytest.raises(SchemaError, match=error):
        Codec().decode(data)


@pytest.mark.parametrize("registry", [None, InMemoryRegistry()], ids=["single-object", "registry"])
def test_a_record_with_its_first_field_encoded_apart_is_the_record_encoded_whole(
    registry: InMemoryRegistry | None,
) -> None:
    """What the journey stage sends for every placement of a touchpoint it keeps encoded."""
    codec = Codec(registry=registry)
    for n, event in enumerate(generate(200, seed=4)):
        record = {
            "touchpoint": parse_touchpoint(event).to_avro(),
            "profile_id": f"p-{n % 7}",
            "journey_id": None if n % 3 else f"j-{n}",
            "routing_key": "k",
            "produced_at": 1_790_000_000_000 + n,
            "source_partition": n % 4,
            "source_offset": n,
            "session_key": f"s-{n}",
            "version": 2**40 + n,
            "late": n % 2 == 0,
        }
        first = codec.encode_first("ResolvedTouchpoint", record["touchpoint"])
        rest = {key: value for key, value in record.items() if key != "touchpoint"}
        whole = codec.encode("ResolvedTouchpoint", record)
        assert codec.encode_with_first("ResolvedTouchpoint", first, rest) == whole
        assert (
            codec.decode_first("ResolvedTouchpoint", first) == codec.decode(whole)[1]["touchpoint"]
        )


def test_a_corrupt_first_field_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="corrupt Avro body"):
        Codec().decode_first("ResolvedTouchpoint", b"\x02")
