"""Detections as the Avro records messaging services, agents and the sink receive (pure)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from parcours.streams.detect import Fired, Handoff, Pivot
from parcours.streams.facts import EventFacts

Payload = Callable[[EventFacts], dict[str, Any]]
"""The full touchpoint record behind an event's facts (decoded from the payload it carries)."""


def pivot_record(pivot: Pivot, profile_id: str, version: int, *, retracted: bool) -> dict[str, Any]:
    return {
        "journey_id": pivot.journey_id,
        "profile_id": profile_id,
        "occurred_at": pivot.occurred_at,
        "from_channel": pivot.from_channel,
        "to_channel": pivot.to_channel,
        "gap_seconds": pivot.gap_ms / 1000,
        "failure_driven": pivot.failure_driven,
        "failure_event_id": pivot.failure_event_id,
        "event_id": pivot.event_id,
        "failure_action": pivot.failure_action,
        "version": version,
        "retracted": retracted,
    }


def dropoff_record(fired: Fired, profile_id: str, version: int) -> dict[str, Any]:
    anchor = fired.anchor
    return {
        "journey_id": fired.journey_id,
        "profile_id": profile_id,
        "kind": fired.kind,
        "anchor_event_id": anchor.event_id,
        "deadline": fired.deadline,
        "value": anchor.value,
        "currency": anchor.currency or None,
        "anchor_channel": anchor.channel,
        "anchor_at": anchor.occurred_at,
        "cart_id": anchor.cart_id or None,
        "case_id": anchor.case_id or None,
        "followup_id": fired.followup_id,
        "recovered": fired.recovered_at is not None,
        "recovered_at": fired.recovered_at,
        "recovered_value": fired.recovered_value,
        "recovery_event_id": fired.recovery_event_id,
        "version": version,
        "retracted": fired.retracted,
    }


def followup_record(
    fired: Fired,
    profile_id: str,
    version: int,
    identities: dict[str, list[str]],
    payload_of: Payload,
) -> dict[str, Any]:
    return {
        "followup_id": fired.followup_id,
        "profile_id": profile_id,
        "kind": fired.kind,
        "channel": fired.channel,
        "status": fired.status,
        "reason": fired.reason,
        "send_at": fired.send_at,
        "expires_at": fired.expires_at,
        "payload": _message_payload(fired, payload_of),
        "journey_id": fired.journey_id,
        "anchor_event_id": fired.anchor.event_id,
        "deadline": fired.deadline,
        "timezone": fired.timezone,
        "identities": identities,
        "version": version,
    }


def _message_payload(fired: Fired, payload_of: Payload) -> dict[str, str]:
    anchor = fired.anchor
    if anchor.case_id or anchor.topic:
        return _strings(
            case_id=anchor.case_id,
            topic=anchor.topic,
            outcome=anchor.outcome,
            channel=anchor.channel,
        )
    cart = payload_of(anchor).get("cart") or {}
    items = [
        {"sku": i["sku"], "quantity": i["quantity"], "unit_price": i["unit_price"]}
        for i in cart.get("items") or ()
    ]
    return _strings(
        cart_id=anchor.cart_id,
        value="" if anchor.value is None else f"{anchor.value:.2f}",
        currency=anchor.currency,
        items=json.dumps(items, separators=(",", ":")) if items else "",
        channel=anchor.channel,
    )


def _strings(**values: str) -> dict[str, str]:
    return {key: value for key, value in values.items() if value}


def _step(event: EventFacts) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "channel": event.channel,
        "action": event.action,
        "case_id": event.case_id or None,
        "topic": event.topic or None,
        "outcome": event.outcome or None,
    }


def handoff_record(handoff: Handoff, version: int, payload_of: Payload) -> dict[str, Any]:
    pivot = handoff.pivot
    return {
        "handoff_id": handoff.handoff_id,
        "profile_id": handoff.profile_id,
        "journey_id": pivot.journey_id,
        "event_id": pivot.event_id,
        "occurred_at": pivot.occurred_at,
        "channel": pivot.to_channel,
        "from_channel": pivot.from_channel,
        "failure_driven": pivot.failure_driven,
        "failure": _step(handoff.failure) if handoff.failure else None,
        "recent": [_step(e) for e in handoff.recent],
        "identities": handoff.identities,
        "cart": _cart(handoff.cart, payload_of) if handoff.cart else None,
        "case": _step(handoff.case) if handoff.case else None,
        "repeat_contacts": len(handoff.repeat_channels),
        "repeat_channels": list(handoff.repeat_channels),
        "version": version,
        "retracted": handoff.retracted,
    }


def _cart(event: EventFacts, payload_of: Payload) -> dict[str, Any]:
    cart = payload_of(event).get("cart") or {}
    return {
        "cart_id": event.cart_id,
        "items": [
            {"sku": i["sku"], "quantity": i["quantity"], "unit_price": i["unit_price"]}
            for i in cart.get("items") or ()
        ],
        "value": event.value,
        "currency": event.currency or None,
    }
