"""Avro on the wire, decodable without guessing the writer's schema.

Records the workers send each other on the internal topics (``identity``,
``touchpoints.resolved``) are JSON instead (:meth:`Codec.encode_internal`): ``[name, record]``,
times as epoch milliseconds, bytes as text. Only parcours reads them, and fastavro takes 20 to 40 µs
to write or read a touchpoint where orjson takes a few. Decoding tells the three apart by their
first byte (``C3``, ``00``, ``[``).

Default framing is Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body);
writer schemas are looked up by fingerprint among the schemas shipped in ``schemas/avro``.
With a Confluent Schema Registry the framing is ``00`` + 4-byte schema id + body, and the writer
schema is fetched from the registry by id. Decoding accepts both framings.
"""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import fastavro
import orjson
from parcours.schemas.errors import SchemaError
from parcours.schemas.registry import AvroSchema, SchemaStore, shipped_store

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
INTERNAL_MAGIC = b"["
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FRAME = "Frame"


class SchemaRegistry(Protocol):
    """What the codec needs from a Confluent-compatible registry client."""

    def register(self, subject: str, schema: AvroSchema) -> int: ...

    def writer_schema(self, schema_id: int) -> dict[str, Any]: ...


class Codec:
    """Encode records by schema name; decode any framed record to ``(schema name, record)``."""

    def __init__(
        self, store: SchemaStore | None = None, registry: SchemaRegistry | None = None
    ) -> None:
        self.store = store or shipped_store()
        self.registry = registry
        self._writers_by_id: dict[int, Any] = {}
        self._parts: dict[str, tuple[Any, Any]] = {}

    def encode(self, name: str, record: dict[str, Any], *, subject: str | None = None) -> bytes:
        schema = self.store.by_name(name)
        return self._framed(schema, _body(schema.parsed, record, schema.name), subject)

    def encode_first(self, name: str, value: Any) -> bytes:
        """The body of the first field of ``name``'s records, alone, for
        :meth:`encode_with_first`."""
        first, _ = self._split(name)
        return _body(first, value, self.store.by_name(name).name)

    def encode_with_first(self, name: str, first: bytes, rest: dict[str, Any]) -> bytes:
        """The bytes :meth:`encode` gives for a ``name`` record whose first field is ``first``
        (from :meth:`encode_first`) and whose other fields are in ``rest``. Avro writes a record
        as its fields one after the other, so a field kept encoded is not written again: a
        stitched touchpoint is placed again and again, and its touchpoint is most of its cost."""
        schema = self.store.by_name(name)
        _, others = self._split(name)
        return self._framed(schema, first + _body(others, rest, schema.name), None)

    def decode_first(self, name: str, first: bytes) -> Any:
        """The value :meth:`encode_first` encoded."""
        schema, _ = self._split(name)
        try:
            return fastavro.schemaless_reader(io.BytesIO(first), schema, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError…
            raise SchemaError(f"corrupt Avro body: {exc!r}", schema=name) from exc

    def _split(self, name: str) -> tuple[Any, Any]:
        """``name``'s first field's schema, and a record schema of its other fields."""
        if name not in self._parts:
            source = self.store.by_name(name).source
            named: dict[str, Any] = {}
            first = fastavro.parse_schema(source["fields"][0]["type"], named_schemas=named)
            others = {"type": "record", "name": f"{source['name']}Rest"}
            others["fields"] = source["fields"][1:]
            self._parts[name] = (first, fastavro.parse_schema(others, named_schemas=named))
        return self._parts[name]

    def _framed(self, schema: AvroSchema, body: bytes, subject: str | None) -> bytes:
        if self.registry is None:
            return bytes(SINGLE_OBJECT_MAGIC + schema.fingerprint + body)
        schema_id = self.registry.register(subject or schema.name, schema)
        return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + body

    def frame(self, items: list[bytes]) -> bytes:
        """Several encoded records as one message. Always single-object encoded: frames carry
        the records of one producer to parcours' own consumers, never to a registry's readers."""
        schema = self.store.by_name(FRAME)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema.parsed, {"items": items})
        return bytes(SINGLE_OBJECT_MAGIC + schema.fingerprint + body.getvalue())

    def unframe(self, data: bytes) -> list[bytes]:
        """The records a message holds: a frame's items, in order, or the message itself."""
        if data[2:10] != self.store.by_name(FRAME).fingerprint or data[:2] != SINGLE_OBJECT_MAGIC:
            return [data]
        items: list[bytes] = self.decode_as(FRAME, data)["items"]
        return items

    def encode_internal(self, name: str, record: dict[str, Any]) -> bytes:
        """A record for parcours' own workers, never for a public topic (see the module doc)."""
        full = self.store.by_name(name).name
        try:
            return orjson.dumps([full, record], default=_plain, option=_INTERNAL)
        except TypeError as exc:
            raise SchemaError(f"record does not fit schema: {exc}", schema=full) from exc

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if data[:1] == INTERNAL_MAGIC:
            return self._internal(data)
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer = self.store.by_fingerprint(data[2:10])
            if writer is None:
                raise SchemaError(f"unknown schema fingerprint {data[2:10].hex()}")
            return writer.name, self._read(
                data[10:], writer.parsed, self.store.by_name(writer.name)
            )
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5 and self.registry is not None:
            (schema_id,) = struct.unpack(">I", data[1:5])
            writer_parsed = self._registry_writer(schema_id)
            reader = self.store.by_name(writer_parsed["name"])
            return reader.name, self._read(data[5:], writer_parsed, reader)
        raise SchemaError(f"not a parcours Avro record (starts with {data[:4].hex() or 'nothing'})")

    def _internal(self, data: bytes) -> tuple[str, dict[str, Any]]:
        try:
            name, record = orjson.loads(data)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise SchemaError(f"corrupt internal record: {exc}") from exc
        if not isinstance(name, str) or not isinstance(record, dict):
            raise SchemaError("corrupt internal record: not [name, record]")
        return self.store.by_name(name).name, record

    def decode_as(self, name: str, data: bytes) -> dict[str, Any]:
        found, record = self.decode(data)
        expected = self.store.by_name(name).name
        if found != expected:
            raise SchemaError(f"expected {expected}, got {found}")
        return record

    def _read(self, body: bytes, writer: Any, reader: AvroSchema) -> dict[str, Any]:
        try:
            # Written with the schema it is read with (the usual case): no resolution to do.
            resolve = None if writer is reader.parsed else reader.parsed
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, resolve)
        except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError…
            raise SchemaError(f"corrupt Avro body: {exc!r}", schema=reader.name) from exc
        if not isinstance(record, dict):
            raise SchemaError("not a record", schema=reader.name)
        return record

    def _registry_writer(self, schema_id: int) -> Any:
        if schema_id not in self._writers_by_id:
            assert self.registry is not None
            source = self.registry.writer_schema(schema_id)
            self._writers_by_id[schema_id] = fastavro.parse_schema(
                source, named_schemas={}, _write_hint=False
            )
        return self._writers_by_id[schema_id]


_INTERNAL = orjson.OPT_PASSTHROUGH_DATETIME


def _body(schema: Any, value: Any, name: str) -> bytes:
    body = io.BytesIO()
    try:
        fastavro.schemaless_writer(body, schema, value, strict_allow_default=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SchemaError(f"record does not fit schema: {exc}", schema=name) from exc
    return body.getvalue()


def _plain(value: Any) -> Any:
    """What JSON cannot hold: a time as epoch ms (exactly as Avro's timestamp-millis), bytes as
    the text they hold (the only bytes field sent internally is a transfer's JSON state)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (aware - EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


class ConfluentRegistry:
    """Adapter over confluent-kafka's SchemaRegistryClient (``PARCOURS_SCHEMA_REGISTRY_URL``)."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf: dict[str, Any] = {"url": url}
        if user:
            conf["basic.auth.user.info"] = f"{user}:{password or ''}"
        self._client = SchemaRegistryClient(conf)
        self._ids: dict[tuple[str, bytes], int] = {}

    def register(self, subject: str, schema: AvroSchema) -> int:
        key = (subject, schema.fingerprint)
        if key not in self._ids:
            from confluent_kafka.schema_registry import Schema

            text = json.dumps(schema.source)
            self._ids[key] = self._client.register_schema(subject, Schema(text, "AVRO"))
        return self._ids[key]

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        schema = self._client.get_schema(schema_id)
        source: dict[str, Any] = json.loads(schema.schema_str or "{}")
        return source
