"""The touchpoint model channel services build, validate and send (see ``producer.py``).

Validation errors name the field (``identities.email_sha256: …``); raw e-mail addresses and phone
numbers never enter the pipeline: hash them with :func:`hash_email` / :func:`hash_phone`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from parcours.schemas import pii
from parcours.schemas.errors import ValidationError
from parcours.schemas.pii import hash_email as hash_email
from parcours.schemas.pii import hash_phone as hash_phone
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError


class Channel(StrEnum):
    web = "web"
    mobile_app = "mobile_app"
    email = "email"
    sms = "sms"
    push = "push"
    chatbot = "chatbot"
    live_chat = "live_chat"
    phone = "phone"
    store = "store"
    social = "social"
    marketplace = "marketplace"
    mail = "mail"
    video = "video"
    kiosk = "kiosk"
    other = "other"


class Outcome(StrEnum):
    resolved = "resolved"
    unresolved = "unresolved"
    escalated = "escalated"
    abandoned = "abandoned"
    failed = "failed"


IDENTITY_TYPES = (
    "crm_id",
    "loyalty_id",
    "email_sha256",
    "phone_sha256",
    "device_id",
    "anonymous_id",
)
"""Known identity types, strongest first: the routing key is the strongest usable one."""

ACTIONS = frozenset(
    [
        "page_view",
        "product_view",
        "search",
        "search_no_results",
        "faq_view",
        "add_to_cart",
        "remove_from_cart",
        "checkout_started",
        "payment_failed",
        "purchase",
        "return_requested",
        "feedback",
        "identify",
        "consent_updated",
        "contact_started",
        "contact_ended",
        "chatbot_fallback",
        "message_sent",
        "message_opened",
        "message_clicked",
        "store_visit",
    ]
)
"""The action catalogue; other actions are kept but carry no journey semantics."""

_BLOCKLIST = frozenset({"", "0", "-1", "null", "none", "undefined", "anonymous", "nil", "n/a"})
_ALL_ZERO = re.compile(r"[0\-_.:]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_blocklisted(value: str) -> bool:
    """Placeholder ids that many devices or people share; they must never link anything."""
    cleaned = value.strip().lower()
    return cleaned in _BLOCKLIST or bool(_ALL_ZERO.fullmatch(cleaned))


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _to_utc(value: Any) -> Any:
    """Epoch milliseconds, or an ISO-8601 string / datetime that carries its offset."""
    if isinstance(value, bool):
        raise ValueError("must be ISO-8601 with an offset or epoch milliseconds")
    if isinstance(value, int | float):
        try:
            value = datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("epoch milliseconds out of range") from None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be ISO-8601 with an offset or epoch milliseconds") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. 2026-11-24T10:00:00+01:00)")
        value = value.astimezone(UTC)
        if not EARLIEST <= value < LATEST:
            # Outside ClickHouse's DateTime64 range these could only be a unit or clock mistake.
            raise ValueError(
                f"{value.isoformat()} is outside the years {EARLIEST.year} to {LATEST.year - 1}"
            )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CartItem(_Strict):
    sku: str = Field(min_length=1)
    quantity: int = Field(ge=0)
    unit_price: float = Field(ge=0)


class Cart(_Strict):
    cart_id: str = Field(min_length=1)
    items: list[CartItem] = Field(default_factory=list)
    value: float | None = Field(None, ge=0)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")


class Order(_Strict):
    order_id: str = Field(min_length=1)
    cart_id: str | None = None
    value: float | None = Field(None, ge=0)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")


class Contact(_Strict):
    case_id: str | None = None
    topic: str | None = None
    outcome: Outcome | None = None


FEEDBACK_SCALES = {"csat": (1, 5), "nps": (0, 10)}
"""Satisfaction scales and their score ranges: CSAT 1-5, NPS 0-10."""


class Feedback(_Strict):
    """A satisfaction score and what it rates (an order, a case, or else the channel it came on)."""

    scale: str
    score: int
    order_id: str | None = Field(None, min_length=1)
    case_id: str | None = Field(None, min_length=1)
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _score_on_its_scale(self) -> Feedback:
        if self.scale not in FEEDBACK_SCALES:
            raise ValueError(
                f"scale: must be one of {', '.join(FEEDBACK_SCALES)}, not {self.scale!r}"
            )
        low, high = FEEDBACK_SCALES[self.scale]
        if not low <= self.score <= high:
            raise ValueError(
                f"score: {self.scale} scores go from {low} to {high}, not {self.score}"
            )
        return self


class Touchpoint(_Strict):
    """The v1 touchpoint envelope (README: Sending events; `schemas/avro/touchpoint.avsc`)."""

    event_id: str = Field(min_length=1, max_length=256)
    occurred_at: datetime
    sent_at: datetime | None = None
    channel: Channel
    action: str = Field(min_length=1, max_length=64)
    identities: dict[str, str] = Field(min_length=1)
    session_id: str | None = None
    source: str | None = None
    cart: Cart | None = None
    order: Order | None = None
    contact: Contact | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    feedback: Feedback | None = None

    @field_validator("occurred_at", "sent_at", mode="before")
    @classmethod
    def _utc_times(cls, value: Any) -> Any:
        return None if value is None else _to_utc(value)

    @field_validator("identities")
    @classmethod
    def _known_hashed_identities(cls, identities: dict[str, str]) -> dict[str, str]:
        for kind, value in identities.items():
            if kind not in IDENTITY_TYPES:
                raise ValueError(
                    f"unknown identity type {kind!r} (known: {', '.join(IDENTITY_TYPES)})"
                )
            if kind.endswith("_sha256") and not _SHA256.fullmatch(value):
                raise ValueError(
                    f"{kind} must be a lower-case sha256 hex digest; hash it with the SDK "
                    "(plaintext e-mail addresses and phone numbers are refused)"
                )
        return identities

    @model_validator(mode="after")
    def _payloads_match_action(self) -> Touchpoint:
        if self.action == "purchase" and self.order is None:
            raise ValueError("order: required when action is 'purchase'")
        if self.action == "return_requested" and self.order is None:
            raise ValueError(
                "order: required when action is 'return_requested' (the order returned)"
            )
        if (self.action == "feedback") != (self.feedback is not None):
            raise ValueError("feedback: required when action is 'feedback', and only then")
        return self

    @property
    def routing_key(self) -> str:
        """``type:value`` of the strongest usable identity; Kafka partitions by it."""
        for kind in IDENTITY_TYPES:
            value = self.identities.get(kind)
            if value is not None and not is_blocklisted(value):
                return f"{kind}:{value}"
        return f"event:{self.event_id}"

    def to_avro(self) -> dict[str, Any]:
        record = self.model_dump(mode="python")
        record["channel"] = self.channel.value
        if self.contact is not None and self.contact.outcome is not None:
            record["contact"]["outcome"] = self.contact.outcome.value
        return record

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Touchpoint:
        return parse_touchpoint(record)


def describe(exc: PydanticValidationError) -> str:
    """``field.path: message`` for each problem, the way a channel team wants to read it."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "event"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Guard:
    """What every way in (SDK, ``parcours replay``, a collector) checks beyond the contract;
    ``settings.guard`` holds the configured one (README: Faults and hostile input)."""

    max_event_bytes: int
    pii_policy: Literal["redact", "reject"]

    def check_size(self, size: int, what: str = "event") -> None:
        if size > self.max_event_bytes:
            raise ValidationError(
                f"{what}: {size:,} bytes is over the limit of {self.max_event_bytes:,} "
                "(PARCOURS_MAX_EVENT_BYTES)"
            )

    def apply(self, touchpoint: Touchpoint, document: str | None = None) -> Touchpoint:
        """The touchpoint with personal data outside the ``*_sha256`` identities redacted, or a
        ValidationError naming the field (the value itself is never repeated). ``document`` is
        its JSON when there is one."""
        if not _may_hold_personal_data(document or touchpoint.model_dump_json()):
            return touchpoint
        record = touchpoint.model_dump(mode="python")
        changed = False
        for path, holder, key, found in _personal_values(record):
            if self.pii_policy == "reject":
                pii.REJECTED.labels(field=path).inc()
                raise ValidationError(
                    f"{path}: looks like {_KIND[found[0].kind]} (PARCOURS_PII_POLICY=reject); "
                    "send it hashed in identities, or leave it out"
                )
            pii.REDACTED.labels(field=path).inc()
            if path.endswith("(name)"):
                value = holder.pop(key)
                holder[pii.redact(key, found)] = value
            else:
                holder[key] = pii.redact(holder[key], found)
            changed = True
        return Touchpoint.model_validate(record) if changed else touchpoint


_KIND = {"email": "an e-mail address", "phone": "a phone number"}


def _may_hold_personal_data(document: str) -> bool:
    """One scan of the whole JSON document, which finds whatever a scan of each string would
    (no pattern crosses a quote), unless an escape hides a character: then every string is
    scanned. Most events are cleared here, at a fraction of the cost of the field by field walk."""
    return "\\" in document or bool(pii.find(document))


_Hit = tuple[str, Any, Any, list[pii.Found]]


def _personal_values(record: dict[str, Any], prefix: str = "") -> list[_Hit]:
    """(field path, container, key, what was found) for each string holding personal data; an
    attribute whose name holds it is ``attributes(name)``. Hashed identities are skipped."""
    hits: list[_Hit] = []
    for key, value in list(record.items()):
        path = f"{prefix}{key}"
        if prefix == "identities." and key.endswith("_sha256"):
            continue
        if isinstance(value, str) and (found := pii.find(value)):
            hits.append((path, record, key, found))
        # After the value's hit: redacting the name moves the (already redacted) value.
        if prefix == "attributes." and (found := pii.find(key)):
            hits.append(("attributes(name)", record, key, found))
        if isinstance(value, dict):
            hits += _personal_values(value, f"{path}.")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    hits += _personal_values(item, f"{path}.")
    return hits


def parse_touchpoint(data: dict[str, Any] | str | bytes, guard: Guard | None = None) -> Touchpoint:
    """Validate a dict or a JSON document; a ValidationError names each bad field. With a
    ``guard``, a JSON document over its size limit is refused before it is parsed, and its PII
    policy is applied."""
    document = None
    if guard is not None and not isinstance(data, dict):
        guard.check_size(len(data.encode() if isinstance(data, str) else data))
        document = data if isinstance(data, str) else data.decode(errors="replace")
    try:
        if isinstance(data, dict):
            touchpoint = Touchpoint.model_validate(data)
        else:
            touchpoint = Touchpoint.model_validate_json(data)
    except PydanticValidationError as exc:
        raise ValidationError(describe(exc)) from None
    return touchpoint if guard is None else guard.apply(touchpoint, document)
