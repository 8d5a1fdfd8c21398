"""The touchpoint model channel services build, validate and send (see ``producer.py``).

Validation errors name the field (``identities.email_sha256: …``); raw e-mail addresses and phone
numbers never enter the pipeline: hash them with :func:`hash_email` / :func:`hash_phone`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from parcours.schemas.errors import ValidationError
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


def hash_email(address: str) -> str:
    """sha256 of the normalised address (trimmed, lower-case)."""
    normalised = address.strip().lower()
    if "@" not in normalised:
        raise ValidationError("not an e-mail address", field="email")
    return hashlib.sha256(normalised.encode()).hexdigest()


def hash_phone(number: str, default_country_code: str | None = None) -> str:
    """sha256 of the number in E.164 form (``+`` and digits only)."""
    compact = re.sub(r"[\s\-().]", "", number.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not compact.startswith("+"):
        if default_country_code is None:
            raise ValidationError("phone number needs a +country code", field="phone")
        compact = f"+{default_country_code.lstrip('+')}{compact.lstrip('0')}"
    if not re.fullmatch(r"\+[0-9]{6,15}", compact):
        raise ValidationError("not a phone number", field="phone")
    return hashlib.sha256(compact.encode()).hexdigest()


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


def parse_touchpoint(data: dict[str, Any] | str | bytes) -> Touchpoint:
    """Validate a dict or a JSON document; a ValidationError names each bad field."""
    try:
        if isinstance(data, dict):
            return Touchpoint.model_validate(data)
        return Touchpoint.model_validate_json(data)
    except PydanticValidationError as exc:
        raise ValidationError(describe(exc)) from None
