"""A customer's whole story for the agent who picks up the contact (README: Profile API).

The SQL lives in ``sinks/profile_queries/``; it reads the profile-keyed read model of
``ddl/008_profiles.sql`` and the analysts' views, always through their ordering keys.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from parcours.schemas.errors import QueryError
from parcours.schemas.sdk import IDENTITY_TYPES
from parcours.sinks.backend import Backend, rows_of
from parcours.sinks.library import LibraryQuery, load
from parcours.sinks.rows import ts

FOLDER = "profile_queries"
MAX_MERGE_HOPS = 16
"""A merge chain longer than this is a loop in profile_merges, not a customer."""
HISTORY = 1000
"""Touchpoints of a profile the API reads at most (the most recent)."""
RECENT = 20
FAILURES = 10
JOURNEYS = 20
FOLLOWUPS = 20

_QUERIES: dict[str, LibraryQuery] = {}


def _query(name: str) -> LibraryQuery:
    if name not in _QUERIES:
        _QUERIES[name] = load(name, FOLDER)
    return _QUERIES[name]


def run(backend: Backend, name: str, **params: object) -> list[dict[str, Any]]:
    sql = _query(name).render(backend.database, {k: str(v) for k, v in params.items()})
    rows: list[dict[str, Any]] = rows_of(backend.query(sql))
    return rows


def resolve(backend: Backend, identity_type: str, value: str) -> str | None:
    """The profile an identity belongs to now, following merges; None if it was never seen."""
    if identity_type not in IDENTITY_TYPES:
        raise QueryError(
            f"identity_type: unknown {identity_type!r} (known: {', '.join(IDENTITY_TYPES)})"
        )
    found = run(backend, "resolve", identity=f"{identity_type}:{value}")[0]
    profile, survivor = str(found["profile_id"]), str(found["survivor"])
    if not profile:
        return None
    for _ in range(MAX_MERGE_HOPS):
        if not survivor or survivor == profile:
            return profile
        profile = survivor
        survivor = run(backend, "survivor", profile_id=profile)[0]["survivor"]
    raise QueryError("profile_merges has a loop", profile_id=profile)


def read_profile(backend: Backend, identity_type: str, value: str) -> dict[str, Any] | None:
    """The profile document the API returns, or None for an identity never seen."""
    profile_id = resolve(backend, identity_type, value)
    if profile_id is None:
        return None
    history = [
        _document(row["doc"])
        for row in run(backend, "touchpoints", profile_id=profile_id, limit=HISTORY)
    ]
    return {
        "profile_id": profile_id,
        "identities": _identities(history),
        "journeys": [
            json.loads(row["doc"])
            for row in run(backend, "journeys", profile_id=profile_id, limit=JOURNEYS)
        ],
        "recent": [_recent(row) for row in history[:RECENT]],
        "open_cart": _open_cart(history),
        "open_cases": _open_cases(history),
        "failures": [_recent(row) for row in history if _is_failure(row)][:FAILURES],
        "followups": [
            _followup(json.loads(row["doc"]))
            for row in run(backend, "followups", profile_id=profile_id, limit=FOLLOWUPS)
        ],
    }


# The rules below are the hand-offs' (README: Detections), applied to the profile's rows, most
# recent first.
FAILURE_ACTIONS = frozenset({"chatbot_fallback", "search_no_results", "payment_failed"})
FAILED_OUTCOMES = frozenset({"unresolved", "failed", "abandoned"})
CART_ACTIONS = frozenset({"add_to_cart", "remove_from_cart", "checkout_started"})
_RECENT_FIELDS = ("event_id", "journey_id", "channel", "action", "occurred_at", "source")


def _is_failure(row: dict[str, Any]) -> bool:
    if row["action"] in FAILURE_ACTIONS:
        return True
    return row["action"] == "contact_ended" and row["outcome"] in FAILED_OUTCOMES


def _recent(row: dict[str, Any]) -> dict[str, Any]:
    """A touchpoint with only the case, cart and order it carries."""
    out = {name: row[name] for name in _RECENT_FIELDS}
    if row["case_id"] or row["topic"]:
        out["case"] = {"case_id": row["case_id"], "topic": row["topic"], "outcome": row["outcome"]}
    if row["cart_id"] and not row["order_id"]:
        out["cart"] = {
            "cart_id": row["cart_id"],
            "items": row["cart_items"],
            "value": row["cart_value"],
            "currency": row["currency"],
        }
    if row["order_id"]:
        out["order"] = {
            "order_id": row["order_id"],
            "cart_id": row["cart_id"],
            "value": row["order_value"],
            "currency": row["currency"],
        }
    return out


def _identities(history: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {}
    for row in history:
        for kind, value in row["identities"].items():
            found.setdefault(kind, set()).add(value)
    return {kind: sorted(found[kind]) for kind in IDENTITY_TYPES if kind in found}


def _open_cart(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last cart change or checkout, unless a purchase came after it or the cart is empty."""
    for row in history:
        if row["action"] == "purchase":
            return None
        if row["cart_id"] and row["action"] in CART_ACTIONS:
            items = row["cart_items"]
            if not items and row["action"] != "checkout_started":
                return None
            return {
                "cart_id": row["cart_id"],
                "items": items,
                "value": row["cart_value"],
                "currency": row["currency"],
                "channel": row["channel"],
                "updated_at": row["occurred_at"],
            }
    return None


def _open_cases(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cases whose last touchpoint did not resolve them. A contact without a case id (a chatbot
    that never opened one) belongs to the latest case on its topic, as for repeat contacts."""
    latest_case_of_topic: dict[str, str] = {}
    for row in history:
        if row["case_id"] and row["topic"]:
            latest_case_of_topic.setdefault(row["topic"], row["case_id"])
    cases: dict[str, dict[str, Any]] = {}
    for row in history:  # most recent first: the first row of a case is its last touchpoint
        if not (row["case_id"] or row["topic"]):
            continue
        case_id = row["case_id"] or latest_case_of_topic.get(row["topic"], "")
        case = cases.setdefault(
            case_id or f"topic:{row['topic']}",
            {
                "case_id": case_id,
                "topic": "",
                "channels": set(),
                "last_outcome": "",
                "resolved": row["outcome"] == "resolved",
                "last_at": row["occurred_at"],
            },
        )
        case["channels"].add(row["channel"])
        case["topic"] = case["topic"] or row["topic"]
        case["last_outcome"] = case["last_outcome"] or row["outcome"]
    return [
        {k: sorted(v) if k == "channels" else v for k, v in case.items() if k != "resolved"}
        for case in cases.values()
        if not case["resolved"]
    ]


def _followup(row: dict[str, Any]) -> dict[str, Any]:
    """Pending: scheduled, and its send time is still to come."""
    now = ts(datetime.now(UTC))
    pending = row["status"] == "scheduled" and row["send_at"] is not None and row["send_at"] > now
    return row | {"pending": pending}


def _document(text: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(text)
    row["cart_items"] = _items(row["cart_items"])
    return row


def _items(items: list[Any]) -> list[dict[str, Any]]:
    """Named tuples come back from JSONEachRow as objects or as arrays, depending on the server."""
    names = ("sku", "quantity", "unit_price")
    return [i if isinstance(i, dict) else dict(zip(names, i, strict=True)) for i in items]
