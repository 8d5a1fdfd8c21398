"""The Avro schemas shipped in ``schemas/avro``, parsed once and indexed by name and fingerprint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, cast

import fastavro
from fastavro.schema import expand_schema, fingerprint, to_parsing_canonical_form
from parcours.schemas.errors import SchemaError

NAMESPACE = "io.parcours.v1"
# Order matters: a schema may reference a named type that an earlier one defines.
SHIPPED = (
    "touchpoint",
    "resolved_touchpoint",
    "journey",
    "pivot",
    "dropoff",
    "followup",
    "dead_letter",
    "marker",
    "identity_link",
    "run_round",
    "epoch_round",
    "tick",
    "watermark",
    "profile_merge",
    "profile_transfer",
    "identity_warning",
    "handoff",
    "frame",
)


@dataclass(frozen=True)
class AvroSchema:
    """One parsed schema with the fingerprint that single-object encoding puts on the wire."""

    name: str
    parsed: Any
    fingerprint: bytes
    source: dict[str, Any]


class SchemaStore:
    """Reader schemas by name, writer schemas by fingerprint."""

    def __init__(self) -> None:
        self._by_name: dict[str, AvroSchema] = {}
        self._by_fingerprint: dict[bytes, AvroSchema] = {}

    def add(self, source: dict[str, Any], *, reader: bool = True) -> AvroSchema:
        """Parse a self-contained schema; ``reader=False`` adds a writer version only."""
        try:
            parsed: dict[str, Any] = fastavro.parse_schema(source, named_schemas={})  # type: ignore[assignment]
        except Exception as exc:  # fastavro raises several types for a bad schema
            raise SchemaError(f"invalid Avro schema: {exc}", schema=source.get("name")) from exc
        canonical = to_parsing_canonical_form(parsed)
        schema = AvroSchema(
            name=parsed["name"],
            parsed=parsed,
            fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
            source=source,
        )
        self._by_fingerprint[schema.fingerprint] = schema
        if reader:
            self._by_name[schema.name] = schema
        return schema

    def by_name(self, name: str) -> AvroSchema:
        full = name if "." in name else f"{NAMESPACE}.{name}"
        try:
            return self._by_name[full]
        except KeyError:
            raise SchemaError("unknown schema name", schema=name) from None

    def by_fingerprint(self, value: bytes) -> AvroSchema | None:
        return self._by_fingerprint.get(value)


def load_shipped() -> SchemaStore:
    """A new store holding every schema shipped with parcours."""
    folder = resources.files("parcours.schemas").joinpath("avro")
    sources = [json.loads(folder.joinpath(f"{stem}.avsc").read_text()) for stem in SHIPPED]
    store = SchemaStore()
    # Inline named types so that every schema stands alone (registry subjects, fingerprints).
    for source in expand_schema(sources):
        store.add(cast(dict[str, Any], source))
    # Earlier versions of evolved schemas (self-contained, `history/NAME.N.avsc`): records their
    # writers left on topics and in state still decode, read with the current schema.
    history = folder.joinpath("history")
    for entry in sorted(history.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".avsc"):
            store.add(json.loads(entry.read_text()), reader=False)
    return store


@lru_cache(maxsize=1)
def shipped_store() -> SchemaStore:
    return load_shipped()
