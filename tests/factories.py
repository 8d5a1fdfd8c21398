"""Valid touchpoint payloads for tests; override what the test is about."""

from __future__ import annotations

from typing import Any


def touchpoint(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "occurred_at": "2026-11-24T10:00:00+01:00",
        "channel": "web",
        "action": "page_view",
        "identities": {"anonymous_id": "ck-1"},
    }
    return base | changes
