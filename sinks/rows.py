"""Decoded Kafka records → rows of the analysts' tables (JSONEachRow-ready dicts)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any


def ts(value: datetime | int | None) -> str | None:
    """A DateTime64(3) literal ClickHouse parses the same way on every backend."""
    if value is None:
        return None
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    elif value.tzinfo is None or value.utcoffset():
        value = value.astimezone(UTC)
    # isoformat truncates to milliseconds as strftime's %f[:-3] did, in half the time: the sink
    # formats about a dozen of these per event.
    return value.isoformat(" ", "milliseconds")[:23]


def touchpoint_row(resolved: dict[str, Any], partition: int, offset: int) -> dict[str, Any]:
    tp = resolved["touchpoint"]
    cart = tp["cart"] or {}
    order = tp["order"] or {}
    contact = tp["contact"] or {}
    feedback = tp.get("feedback") or {}
    return {
        "event_id": tp["event_id"],
        "profile_id": resolved["profile_id"] or "",
        "journey_id": resolved["journey_id"] or "",
        "channel": tp["channel"],
        "action": tp["action"],
        "occurred_at": ts(tp["occurred_at"]),
        "sent_at": ts(tp["sent_at"]),
        "routing_key": resolved["routing_key"],
        "identities": tp["identities"],
        "session_id": tp["session_id"] or "",
        "source": tp["source"] or "",
        "cart_id": cart.get("cart_id") or order.get("cart_id") or "",
        "cart_items": cart.get("items", []),
        "cart_value": cart.get("value"),
        "order_id": order.get("order_id") or "",
        "order_value": order.get("value"),
        "currency": order.get("currency") or cart.get("currency") or "",
        "case_id": contact.get("case_id") or "",
        "contact_topic": contact.get("topic") or "",
        "contact_outcome": contact.get("outcome") or "",
        "attributes": tp["attributes"],
        "produced_at": ts(resolved["produced_at"]),
        "kafka_partition": partition,
        "kafka_offset": offset,
        "session_key": resolved.get("session_key") or "",
        "version": resolved.get("version", 0),
        "late": resolved.get("late", False),
        "feedback_scale": feedback.get("scale") or "",
        "feedback_score": feedback.get("score"),
        "feedback_order_id": feedback.get("order_id") or "",
        "feedback_case_id": feedback.get("case_id") or "",
        "feedback_comment": feedback.get("comment") or "",
    }


def journey_row(record: dict[str, Any]) -> dict[str, Any]:
    return record | {"started_at": ts(record["started_at"]), "last_at": ts(record["last_at"])}


def warning_row(record: dict[str, Any]) -> dict[str, Any]:
    return record | {"occurred_at": ts(record["occurred_at"])}


def merge_row(record: dict[str, Any]) -> dict[str, Any]:
    return {"loser": record["loser"], "survivor": record["survivor"]}


def pivot_row(record: dict[str, Any]) -> dict[str, Any]:
    return record | {
        "occurred_at": ts(record["occurred_at"]),
        "failure_event_id": record["failure_event_id"] or "",
        "failure_action": record["failure_action"] or "",
        "retracted": int(record["retracted"]),
    }


def dropoff_row(record: dict[str, Any]) -> dict[str, Any]:
    return record | {
        "deadline": ts(record["deadline"]),
        "anchor_at": ts(record["anchor_at"]),
        "recovered_at": ts(record["recovered_at"]),
        "currency": record["currency"] or "",
        "anchor_channel": record["anchor_channel"] or "",
        "cart_id": record["cart_id"] or "",
        "case_id": record["case_id"] or "",
        "followup_id": record["followup_id"] or "",
        "recovery_event_id": record["recovery_event_id"] or "",
        "retracted": int(record["retracted"]),
    }


def followup_row(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "followup_id": record["followup_id"],
        "profile_id": record["profile_id"],
        "kind": record["kind"],
        "channel": record["channel"] or "",
        "status": record["status"],
        "reason": record["reason"] or "",
        "send_at": ts(record["send_at"]),
        "expires_at": ts(record["expires_at"]),
        "payload": record["payload"],
        "journey_id": record["journey_id"] or "",
        "anchor_event_id": record["anchor_event_id"] or "",
        "deadline": ts(record["deadline"]),
        "timezone": record["timezone"] or "",
        "version": record["version"],
    }


def handoff_row(record: dict[str, Any]) -> dict[str, Any]:
    failure = record["failure"] or {}
    case = record["case"] or {}
    cart = record["cart"] or {}
    return {
        "handoff_id": record["handoff_id"],
        "profile_id": record["profile_id"],
        "journey_id": record["journey_id"],
        "event_id": record["event_id"],
        "occurred_at": ts(record["occurred_at"]),
        "channel": record["channel"],
        "from_channel": record["from_channel"],
        "failure_driven": record["failure_driven"],
        "failure_event_id": failure.get("event_id") or "",
        "failure_action": failure.get("action") or "",
        "case_id": case.get("case_id") or "",
        "case_topic": case.get("topic") or "",
        "cart_id": cart.get("cart_id") or "",
        "cart_value": cart.get("value"),
        "repeat_contacts": record["repeat_contacts"],
        "repeat_channels": record["repeat_channels"],
        "recent": [f"{step['channel']}:{step['action']}" for step in record["recent"]],
        "version": record["version"],
        "retracted": int(record["retracted"]),
    }


def dead_letter_row(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": record["stage"],
        "reason": record["reason"],
        "payload_b64": base64.b64encode(record["payload"]).decode(),
        "topic": record["topic"] or "",
        "partition": record["partition"],
        "offset": record["offset"],
        "line": record["line"],
        "received_at": ts(record["received_at"]),
    }


def marker_row(record: dict[str, Any], topic: str, partition: int) -> dict[str, Any]:
    return {
        "run_id": record["run_id"],
        "topic": topic,
        "partition": partition,
        "source_partition": record["source_partition"],
        "source_partitions": record["source_partitions"],
        "watermark": ts(record["watermark"]),
    }
