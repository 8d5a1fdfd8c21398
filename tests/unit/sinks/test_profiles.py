"""The profile document's rules on a profile's rows (most recent first), as the hand-offs'."""

from __future__ import annotations

from typing import Any

from parcours.sinks.profiles import _is_failure, _open_cart, _open_cases


def row(action: str, at: str, channel: str = "web", **fields: Any) -> dict[str, Any]:
    base = {
        "event_id": f"e-{at}",
        "journey_id": "j",
        "channel": channel,
        "action": action,
        "occurred_at": at,
        "identities": {},
        "source": "",
        "case_id": "",
        "topic": "",
        "outcome": "",
        "cart_id": "",
        "cart_items": [],
        "cart_value": None,
        "order_id": "",
        "order_value": None,
        "currency": "",
    }
    return base | fields


ITEM = {"sku": "S-1", "quantity": 1, "unit_price": 20.0}


def test_the_last_cart_change_is_the_open_cart_until_a_purchase() -> None:
    added = row("add_to_cart", "10:05", cart_id="c-1", cart_items=[ITEM], cart_value=20.0)
    history = [row("page_view", "10:06"), added, row("add_to_cart", "10:01", cart_id="c-0")]
    cart = _open_cart(history)
    assert cart is not None and cart["cart_id"] == "c-1" and cart["items"] == [ITEM]
    assert _open_cart([row("purchase", "10:07", order_id="o-1"), *history]) is None


def test_an_emptied_cart_is_not_open_but_a_checkout_is() -> None:
    assert _open_cart([row("remove_from_cart", "10:06", cart_id="c-1")]) is None
    assert _open_cart([row("checkout_started", "10:06", cart_id="c-1")]) is not None


def test_a_case_is_open_until_its_last_touchpoint_resolves_it() -> None:
    chatbot = row("chatbot_fallback", "10:00", "chatbot", topic="billing")
    call = row("contact_started", "10:10", "phone", case_id="K-1", topic="billing")
    ended = row("contact_ended", "10:20", "phone", case_id="K-1", outcome="unresolved")
    cases = _open_cases([ended, call, chatbot])
    # The chatbot never opened a case: it joins the case on its topic.
    assert cases == [
        {
            "case_id": "K-1",
            "topic": "billing",
            "channels": ["chatbot", "phone"],
            "last_outcome": "unresolved",
            "last_at": "10:20",
        }
    ]
    resolved = row("contact_ended", "10:30", "phone", case_id="K-1", outcome="resolved")
    assert _open_cases([resolved, ended, call, chatbot]) == []


def test_failures_are_the_detections_failures() -> None:
    assert _is_failure(row("chatbot_fallback", "1"))
    assert _is_failure(row("contact_ended", "1", outcome="abandoned"))
    assert not _is_failure(row("contact_ended", "1", outcome="resolved"))
    assert not _is_failure(row("page_view", "1"))
