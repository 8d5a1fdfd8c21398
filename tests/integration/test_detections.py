"""Pivots, hand-offs, drop-offs and follow-ups through the real pipeline: the rows analysts see
and the messages messaging services and agents receive.

The module runs its own stack so that its event times (and so its watermark) are its own: each
test's story happens on a later day than the previous one's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from parcours.deploy.replay import ReplayResult, replay
from parcours.deploy.stack import Stack, embedded_stack
from parcours.sinks.backend import Backend
from parcours.sinks.client import open_reader

from tests.factories import touchpoint
from tests.integration.conftest import isolated_settings, query, topic_records

pytestmark = pytest.mark.integration

DAY0 = datetime(2027, 1, 4, tzinfo=UTC)
CART = {
    "cart_id": "",
    "items": [{"sku": "boots-42", "quantity": 1, "unit_price": 89.0}],
    "value": 89.0,
    "currency": "EUR",
}


@pytest.fixture(scope="module")
def detect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = isolated_settings(tmp_path_factory.mktemp("detect"), "det", partitions=2, workers=1)
    with embedded_stack(settings) as running:
        yield running


@pytest.fixture(scope="module")
def reader(detect_stack: Stack) -> Backend:
    return open_reader(detect_stack.settings)


class Story:
    """One test's customers and touchpoints, on a day of its own (UTC unless a zone is given)."""

    day = 0

    def __init__(self) -> None:
        Story.day += 10
        self.start = DAY0 + timedelta(days=Story.day, hours=9)  # 09:00 UTC: not quiet hours
        self.tag = uuid.uuid4().hex[:8]
        self.events: list[dict[str, Any]] = []

    def at(self, hours: float) -> datetime:
        return self.start + timedelta(hours=hours)

    def add(self, hours: float, customer: str, channel: str, action: str, **changes: Any) -> str:
        event_id = f"{self.tag}-{len(self.events) + 1}"
        ids = changes.pop("identities", None) or {"crm_id": f"crm-{self.tag}-{customer}"}
        attributes = {"timezone": changes.pop("timezone", "UTC")} | changes.pop("attributes", {})
        self.events.append(
            touchpoint(
                event_id=event_id,
                occurred_at=self.at(hours).isoformat(),
                channel=channel,
                action=action,
                identities=ids,
                attributes=attributes,
                **changes,
            )
        )
        return event_id

    def cart(self, hours: float, customer: str, cart_id: str = "c1", **changes: Any) -> str:
        cart = CART | {"cart_id": f"{self.tag}-{customer}-{cart_id}"}
        return self.add(hours, customer, "web", "add_to_cart", cart=cart, **changes)

    def consent(self, hours: float, customer: str, channel: str = "email") -> str:
        attributes = {"consent_channel": channel, "consent_granted": "true"}
        return self.add(hours, customer, "web", "consent_updated", attributes=attributes)

    def purchase(self, hours: float, customer: str, value: float = 89.0) -> str:
        order = {"order_id": f"o-{self.tag}-{len(self.events)}", "value": value, "currency": "EUR"}
        return self.add(hours, customer, "store", "purchase", order=order)

    def replay(
        self, stack: Stack, reader: Backend, tmp_path: Path, until_hours: float
    ) -> ReplayResult:
        """Send the story, ending with a bystander's touchpoint at ``until_hours``: a replay's
        watermark ends at its latest event, and that is what lets deadlines pass."""
        self.add(until_hours, "bystander", "web", "page_view")
        self.path = tmp_path / f"{self.tag}.jsonl"
        self.path.write_text("".join(json.dumps(e) + "\n" for e in self.events))
        return self.send(stack, reader)

    def send(self, stack: Stack, reader: Backend) -> ReplayResult:
        result = replay(stack.settings, self.path, reader=reader, timeout=120)
        assert (result.accepted, result.rejected) == (len(self.events), 0)
        return result

    def send_later(self, stack: Stack, reader: Backend, *event_ids: str) -> ReplayResult:
        """A later file with only these events of the story."""
        events = [e for e in self.events if e["event_id"] in event_ids]
        path = self.path.with_suffix(".later.jsonl")
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        result = replay(stack.settings, path, reader=reader, timeout=120)
        assert (result.accepted, result.rejected) == (len(events), 0)
        return result

    def like(self) -> str:
        return f"'{self.tag}-%'"


def _rows(reader: Backend, sql: str) -> list[dict[str, Any]]:
    return query(reader, sql)


def _followups(reader: Backend, story: Story) -> dict[str, dict[str, Any]]:
    rows = _rows(
        reader,
        "SELECT anchor_event_id, kind, status, reason, channel, send_at, expires_at, payload "
        f"FROM {{db}}.followups WHERE anchor_event_id LIKE {story.like()}",
    )
    return {row.pop("anchor_event_id"): row for row in rows}


def _dropoffs(reader: Backend, story: Story) -> dict[str, dict[str, Any]]:
    rows = _rows(
        reader,
        "SELECT anchor_event_id, kind, deadline, value, recovered, recovered_value "
        f"FROM {{db}}.dropoffs WHERE anchor_event_id LIKE {story.like()}",
    )
    return {row.pop("anchor_event_id"): row for row in rows}


def _on_topics(stack: Stack, run: ReplayResult, story: Story) -> list[dict[str, Any]]:
    kinds = ("abandoned_cart", "abandoned_checkout", "abandoned_contact")
    return [
        record
        for kind in kinds
        for _, record in topic_records(stack.settings, f"followups.{kind}", run.run_id)
        if (record["anchor_event_id"] or "").startswith(story.tag)
    ]


def _canonical(records: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in records)


def _utc(value: Any) -> datetime:
    """A DateTime64(3, 'UTC') as the backend returns it (a string or a datetime)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_a_chatbot_fallback_followed_by_a_call_is_one_failure_driven_pivot_with_a_handoff(
    detect_stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    story = Story()
    bot = {"anonymous_id": f"ck-{story.tag}", "email_sha256": "a" * 64}
    caller = {"crm_id": f"crm-{story.tag}", "email_sha256": "a" * 64}
    case = {"case_id": f"case-{story.tag}", "topic": "billing"}
    story.add(0.0, "x", "chatbot", "contact_started", identities=bot, contact=case)
    story.add(0.02, "x", "chatbot", "chatbot_fallback", identities=bot, contact=case)
    ended = story.add(
        0.05,
        "x",
        "chatbot",
        "contact_ended",
        identities=bot,
        contact=case | {"outcome": "unresolved"},
    )
    call = story.add(0.3, "x", "phone", "contact_started", identities=caller, contact=case)
    run = story.replay(detect_stack, reader, tmp_path, until_hours=0.5)

    pivots = _rows(
        reader,
        "SELECT from_channel, to_channel, failure_driven, failure_event_id, gap_seconds "
        f"FROM {{db}}.pivots WHERE event_id LIKE {story.like()}",
    )
    assert pivots == [
        {
            "from_channel": "chatbot",
            "to_channel": "phone",
            "failure_driven": True,
            "failure_event_id": ended,
            "gap_seconds": 900.0,
        }
    ]
    sent = [
        r
        for k, r in topic_records(detect_stack.settings, "handoffs", run.run_id)
        if r["event_id"] == call
    ]
    # The call can reach its journey before the chat's fallback or end does (their identities
    # route them through different partitions): the agent then gets a first hand-off at once and
    # another, same id, a higher version, as each arrives. The desktop shows the highest version.
    handoff = max(sent, key=lambda r: r["version"])
    assert {r["handoff_id"] for r in sent} == {handoff["handoff_id"]}
    assert not handoff["retracted"]
    assert (handoff["channel"], handoff["from_channel"], handoff["failure_driven"]) == (
        "phone",
        "chatbot",
        True,
    )
    assert handoff["failure"]["event_id"] == ended and handoff["failure"]["outcome"] == "unresolved"
    assert (handoff["case"]["case_id"], handoff["case"]["topic"]) == (case["case_id"], "billing")
    assert [step["action"] for step in handoff["recent"]] == [
        "contact_started",
        "chatbot_fallback",
        "contact_ended",
        "contact_started",
    ]
    assert handoff["identities"]["crm_id"] == [caller["crm_id"]]
    assert handoff["identities"]["email_sha256"] == ["a" * 64]
    assert (handoff["repeat_contacts"], handoff["repeat_channels"]) == (1, ["chatbot"])
    table = _rows(
        reader,
        f"SELECT channel, repeat_contacts, case_topic FROM {{db}}.handoffs WHERE event_id = '{call}'",
    )
    assert table == [{"channel": "phone", "repeat_contacts": 1, "case_topic": "billing"}]


def test_a_chat_end_that_arrives_after_the_call_reaches_the_agent_in_a_second_handoff(
    detect_stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    """The chat's end happened two minutes before the call but is sent after it (within the
    allowed lateness): one identity, so every hop keeps that order and the call is stitched
    first. The agent gets a hand-off at once and then the one the full history gives."""
    story = Story()
    case = {"case_id": f"case-{story.tag}", "topic": "billing"}
    story.add(0.0, "x", "chatbot", "contact_started", contact=case)
    fallback = story.add(0.2, "x", "chatbot", "chatbot_fallback", contact=case)
    call = story.add(0.3, "x", "phone", "contact_started", contact=case)
    ended = story.add(
        0.27, "x", "chatbot", "contact_ended", contact=case | {"outcome": "unresolved"}
    )
    run = story.replay(detect_stack, reader, tmp_path, until_hours=0.5)

    sent = [
        r
        for k, r in topic_records(detect_stack.settings, "handoffs", run.run_id)
        if r["event_id"] == call
    ]
    sent.sort(key=lambda r: r["version"])
    assert [r["failure"]["event_id"] for r in sent] == [fallback, ended]
    assert [[step["event_id"] for step in r["recent"]] for r in sent][-1][-2:] == [ended, call]
    assert len({r["handoff_id"] for r in sent}) == 1 and not any(r["retracted"] for r in sent)
    table = _rows(
        reader,
        f"SELECT failure_event_id, failure_action FROM {{db}}.handoffs WHERE event_id = '{call}'",
    )
    assert table == [{"failure_event_id": ended, "failure_action": "contact_ended"}]


def test_a_web_cart_bought_in_a_store_has_no_dropoff_and_no_followup(
    detect_stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    story = Story()
    story.consent(0.0, "ann")
    story.cart(1.0, "ann")
    story.purchase(1.5, "ann")
    run = story.replay(detect_stack, reader, tmp_path, until_hours=6.0)
    assert _dropoffs(reader, story) == {}
    assert _followups(reader, story) == {}
    assert _on_topics(detect_stack, run, story) == []
    pivots = _rows(
        reader,
        f"SELECT from_channel, to_channel FROM {{db}}.pivots WHERE event_id LIKE {story.like()}",
    )
    assert pivots == [{"from_channel": "web", "to_channel": "store"}]


def test_an_abandoned_cart_with_consent_is_one_scheduled_email_and_without_one_suppressed_record(
    detect_stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    story = Story()
    story.consent(0.0, "ann", "email")
    ann = story.cart(1.0, "ann")
    bob = story.cart(1.0, "bob")
    run = story.replay(detect_stack, reader, tmp_path, until_hours=3.0)

    deadline = story.at(2.0)
    dropoffs = _dropoffs(reader, story)
    assert sorted(dropoffs) == sorted([ann, bob])
    for dropoff in dropoffs.values():
        assert (dropoff["kind"], _utc(dropoff["deadline"]), dropoff["value"]) == (
            "abandoned_cart",
            deadline,
            89.0,
        )
    rows = _followups(reader, story)
    assert (rows[ann]["status"], rows[ann]["channel"], rows[ann]["reason"]) == (
        "scheduled",
        "email",
        "",
    )
    assert _utc(rows[ann]["send_at"]) == deadline
    assert _utc(rows[ann]["expires_at"]) == deadline + timedelta(days=1)
    assert (rows[bob]["status"], rows[bob]["reason"], rows[bob]["send_at"]) == (
        "suppressed",
        "no_consent",
        None,
    )

    messages = _on_topics(detect_stack, run, story)
    assert sorted((m["anchor_event_id"], m["status"]) for m in messages) == sorted(
        [(ann, "scheduled"), (bob, "suppressed")]
    )
    scheduled = next(m for m in messages if m["anchor_event_id"] == ann)
    assert scheduled["channel"] == "email" and scheduled["kind"] == "abandoned_cart"
    assert json.loads(scheduled["payload"]["items"]) == CART["items"]
    assert (scheduled["payload"]["value"], scheduled["payload"]["currency"]) == ("89.00", "EUR")
    assert scheduled["send_at"] == deadline

    # The same file again: every event is a duplicate, so no follow-up is emitted twice.
    second = story.send(detect_stack, reader)
    # Partitions interleave differently on each read: compare what is there, not the order.
    assert _canonical(_on_topics(detect_stack, second, story)) == _canonical(messages)
    assert _followups(reader, story) == rows


def test_quiet_hours_hold_until_eight_local_and_a_purchase_before_send_at_cancels(
    detect_stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    story = Story()
    paris = "Europe/Paris"  # UTC+1 in winter: 20:30 UTC is 21:30 in Paris
    story.consent(0.0, "ann")
    story.consent(0.0, "bob")
    ann = story.cart(11.5, "ann", timezone=paris)  # deadline 22:30 in Paris
    bob = story.cart(11.5, "bob", timezone=paris)
    story.purchase(21.5, "bob")  # 07:30 in Paris the next morning, before 08:00
    story.replay(detect_stack, reader, tmp_path, until_hours=36.0)

    rows = _followups(reader, story)
    eight_in_paris = story.at(22.0)  # 08:00 in Paris = 07:00 UTC
    assert (rows[ann]["status"], _utc(rows[ann]["send_at"])) == ("scheduled", eight_in_paris)
    assert (rows[bob]["status"], rows[bob]["reason"]) == ("cancelled", "purchased")


def test_a_second_cart_within_24h_is_capped_and_a_purchase_after_the_followup_recovers_it(
    detect_stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    story = Story()
    story.consent(0.0, "ann", "sms")
    first = story.cart(1.0, "ann", "c1")
    second = story.cart(5.0, "ann", "c2")
    story.purchase(50.0, "ann", value=120.0)  # two days after the first follow-up
    story.replay(detect_stack, reader, tmp_path, until_hours=60.0)

    rows = _followups(reader, story)
    assert (rows[first]["status"], rows[first]["channel"]) == ("scheduled", "sms")
    assert (rows[second]["status"], rows[second]["reason"]) == ("suppressed", "frequency_cap")
    dropoffs = _dropoffs(reader, story)
    assert (dropoffs[first]["recovered"], dropoffs[first]["recovered_value"]) == (True, 120.0)
    assert dropoffs[second]["recovered"] is False


def test_a_login_beyond_the_allowed_lateness_retracts_the_carts_dropoff_and_cancels_its_followup(
    detect_stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    """Convergence: the anonymous web cart fired on its own profile; a login that links it to the
    customer who bought in the store before the deadline comes in a later replay, far behind the
    watermark. The tables end as if the login had come in time."""
    story = Story()
    anonymous = {"anonymous_id": f"ck-{story.tag}"}
    attributes = {"consent_channel": "email", "consent_granted": "true"}
    story.add(0.0, "ann", "web", "consent_updated", identities=anonymous, attributes=attributes)
    cart = story.cart(1.0, "ann", identities=anonymous)
    story.purchase(1.5, "ann")  # the crm id, in a store, before the deadline (2.0)
    story.replay(detect_stack, reader, tmp_path, until_hours=6.0)
    assert _followups(reader, story)[cart]["status"] == "scheduled"
    assert list(_dropoffs(reader, story)) == [cart]

    login = {"anonymous_id": f"ck-{story.tag}", "crm_id": f"crm-{story.tag}-ann"}
    late = story.add(1.1, "ann", "web", "login", identities=login)
    second = story.send_later(detect_stack, reader, late)

    assert _dropoffs(reader, story) == {}
    assert _followups(reader, story) == {}  # the contract's view leaves retracted ones out
    versions = _rows(
        reader,
        "SELECT status, reason FROM {db}.followup_versions FINAL "
        f"WHERE anchor_event_id = '{cart}'",
    )
    assert versions == [{"status": "cancelled", "reason": "retracted"}]
    cancelled = [m for m in _on_topics(detect_stack, second, story) if m["anchor_event_id"] == cart]
    # Messaging services got the schedule (first replay), then its cancellation.
    assert sorted((m["status"], m["reason"] or "") for m in cancelled) == [
        ("cancelled", "retracted"),
        ("scheduled", ""),
    ]
    flagged = _rows(reader, f"SELECT late FROM {{db}}.touchpoints WHERE event_id = '{late}'")
    assert flagged == [{"late": True}]
