"""What the journey core keeps of one touchpoint: the few fields stitching and detection read.

Profiles keep their events for a retention and are saved whole at each change, so this stays small: the record an
event came in (for the rows and messages that need all of it: cart items, identities) is kept once,
by event id, beside the profile (streams/stages.py, ``RECORD_KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PURCHASE = "purchase"
BRAND_ACTIONS = frozenset({"message_sent", "feedback"})
"""The brand speaking, or the customer answering its survey (a score comes on whatever channel the
survey used), not the customer choosing a channel: never a pivot, never a journey channel."""
FAILURE_ACTIONS = frozenset({"chatbot_fallback", "search_no_results", "payment_failed"})
FAILED_OUTCOMES = frozenset({"unresolved", "failed", "abandoned"})
CART_CHANGES = frozenset({"add_to_cart", "remove_from_cart"})
CHECKOUT = "checkout_started"
CONTACT_ENDED = "contact_ended"
CONTACT_ACTIONS = frozenset({"contact_started", "contact_ended", "chatbot_fallback"})


@dataclass(frozen=True)
class EventFacts:
    """One touchpoint as the core sees it. Optional facts default to empty and stay out of JSON."""

    event_id: str
    occurred_at: int
    channel: str
    action: str
    late: bool = False
    cart_id: str = ""
    cart_items: int = 0
    value: float | None = None
    currency: str = ""
    case_id: str = ""
    topic: str = ""
    outcome: str = ""
    consent_channel: str = ""
    consent_granted: bool = False
    timezone: str = ""

    @property
    def order(self) -> tuple[int, str]:
        return self.occurred_at, self.event_id

    @property
    def is_failure(self) -> bool:
        """A touchpoint on which the channel failed the customer (README: Detections, pivots)."""
        if self.action in FAILURE_ACTIONS:
            return True
        return self.action == CONTACT_ENDED and self.outcome in FAILED_OUTCOMES

    @property
    def is_brand(self) -> bool:
        return self.action in BRAND_ACTIONS

    @property
    def is_contact(self) -> bool:
        return self.action in CONTACT_ACTIONS or bool(self.case_id)

    def to_json(self) -> dict[str, Any]:
        # A profile's every save writes all its events: each one's JSON is made once, or kept
        # from the JSON it was read from (the facts are frozen, so it cannot go stale).
        data: dict[str, Any] | None = self.__dict__.get("_json")
        if data is None:
            data = {
                name: value
                for name, default in _DEFAULTS.items()
                if (value := getattr(self, name)) != default
            }
            object.__setattr__(self, "_json", data)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventFacts:
        facts = cls(**data)
        object.__setattr__(facts, "_json", data)
        return facts


def flat(record: object) -> dict[str, Any]:
    """A dataclass's fields as a dict, one level deep: ``dataclasses.asdict`` deep-copies every
    value, and a profile's state is written whole at every change."""
    return {name: getattr(record, name) for name in _names(type(record))}


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(kind: type) -> tuple[str, ...]:
    if kind not in _NAMES:
        _NAMES[kind] = tuple(f.name for f in fields(kind))
    return _NAMES[kind]


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(EventFacts)}
"""Field → default (``MISSING`` for the required ones, which are therefore always written)."""


def facts_of(touchpoint: dict[str, Any], occurred_at: int) -> EventFacts:
    """The facts of a decoded ``Touchpoint`` record (the Avro contract's field names)."""
    cart = touchpoint.get("cart") or {}
    order = touchpoint.get("order") or {}
    contact = touchpoint.get("contact") or {}
    attributes = touchpoint.get("attributes") or {}
    priced = order or cart
    return EventFacts(
        event_id=touchpoint["event_id"],
        occurred_at=occurred_at,
        channel=str(touchpoint["channel"]),
        action=touchpoint["action"],
        cart_id=cart.get("cart_id") or order.get("cart_id") or "",
        cart_items=sum(int(item["quantity"]) for item in cart.get("items") or ()),
        value=priced.get("value"),
        currency=priced.get("currency") or "",
        case_id=contact.get("case_id") or "",
        topic=contact.get("topic") or "",
        outcome=str(contact.get("outcome") or ""),
        consent_channel=attributes.get("consent_channel", ""),
        consent_granted=attributes.get("consent_granted", "").lower() in ("true", "1", "yes"),
        timezone=attributes.get("timezone", ""),
    )
