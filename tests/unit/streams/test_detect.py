"""Detections in the pure core: every rule at its edges, time zones across DST, arrival order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time
from itertools import permutations
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from parcours.streams.detect import Fired, Handoff, hold_for_quiet_hours
from parcours.streams.facts import EventFacts
from parcours.streams.journey import JourneyCore, Outputs, ProfileState, Rules

from tests.unit.streams.arrivals import late_within

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
RULES = Rules()
T0 = int(datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp() * 1000)
"""10:00 UTC, outside quiet hours in UTC."""


def ev(
    n: int, at: int, channel: str = "web", action: str = "page_view", **facts: object
) -> EventFacts:
    return EventFacts(f"e{n:03d}", at, channel, action, **facts)  # type: ignore[arg-type]


def cart(n: int, at: int, cart_id: str = "c1", items: int = 1, **facts: object) -> EventFacts:
    return ev(
        n,
        at,
        "web",
        "add_to_cart",
        cart_id=cart_id,
        cart_items=items,
        value=40.0,
        currency="EUR",
        **facts,
    )


def purchase(n: int, at: int, channel: str = "store", value: float = 40.0) -> EventFacts:
    return ev(n, at, channel, "purchase", value=value, currency="EUR")


def consent(n: int, at: int, channel: str = "email", granted: bool = True) -> EventFacts:
    return ev(n, at, "web", "consent_updated", consent_channel=channel, consent_granted=granted)


class Seen:
    """What analysts and messaging services end up with: the latest version of every row."""

    def __init__(self) -> None:
        self.pivots: dict[str, tuple[object, ...]] = {}
        self.dropoffs: dict[str, Fired] = {}
        self.followups: dict[str, tuple[object, ...]] = {}
        self.messages: list[tuple[str, str]] = []
        self.handoffs: list[str] = []
        """Landing event of every hand-off sent, in order (a re-sent one appears again)."""
        self.shown: dict[str, Handoff] = {}
        """The last hand-off sent per landing event, retracted ones left out."""
        self.sent: list[Handoff] = []
        self.state = ProfileState("p-1")
        """The profile fed (set by :func:`run`)."""

    def take(self, out: Outputs) -> Outputs:
        for p in out.pivots:
            self.pivots[p.event_id] = (
                p.journey_id,
                p.from_channel,
                p.to_channel,
                p.failure_event_id,
            )
        for p in out.retracted_pivots:
            self.pivots.pop(p.event_id, None)
        for f in out.dropoffs:
            self.dropoffs[f.key] = f
        for f in out.followups:
            self.followups[f.followup_id] = (f.status, f.reason, f.channel, f.send_at, f.expires_at)
            self.messages.append((f.followup_id, f.status))
        self.handoffs += [h.pivot.event_id for h in out.handoffs]
        self.sent += out.handoffs
        for handoff in out.handoffs:
            self.shown[handoff.pivot.event_id] = handoff
            if handoff.retracted:
                del self.shown[handoff.pivot.event_id]
        return out


def run(events: list[EventFacts], until: int, rules: Rules = RULES) -> Seen:
    """Feed in order (no watermark), then end the run with the watermark at ``until``."""
    core, state, seen = JourneyCore(rules), ProfileState("p-1"), Seen()
    for event in events:
        seen.take(core.add(state, event, None))
    seen.take(core.advance(state, until, finished=True))
    seen.state = state
    return seen


def only(seen: Seen) -> Fired:
    assert len(seen.dropoffs) == 1, seen.dropoffs
    return next(iter(seen.dropoffs.values()))


# --- pivots -----------------------------------------------------------------------------------


def test_a_chatbot_fallback_then_a_call_is_one_failure_driven_pivot_with_a_handoff() -> None:
    seen = run(
        [
            ev(1, T0, "chatbot", "contact_started", case_id="k1", topic="billing"),
            ev(2, T0 + MIN, "chatbot", "chatbot_fallback", case_id="k1", topic="billing"),
            ev(3, T0 + 20 * MIN, "phone", "contact_started", case_id="k1", topic="billing"),
        ],
        T0 + HOUR,
    )
    assert list(seen.pivots.values()) == [(seen.pivots["e003"][0], "chatbot", "phone", "e002")]
    assert seen.handoffs == ["e003"]


def test_a_failure_exactly_thirty_minutes_before_the_switch_drives_it_one_ms_later_does_not() -> (
    None
):
    for gap, cause in ((30 * MIN, "e001"), (30 * MIN + 1, None)):
        seen = run([ev(1, T0, "web", "search_no_results"), ev(2, T0 + gap, "live_chat")], T0)
        assert seen.pivots["e002"][3] == cause


def test_a_contact_ended_unresolved_is_a_failure_resolved_is_not() -> None:
    for outcome, cause in (("unresolved", "e001"), ("failed", "e001"), ("resolved", None)):
        seen = run(
            [ev(1, T0, "chatbot", "contact_ended", outcome=outcome), ev(2, T0 + MIN, "phone")], T0
        )
        assert seen.pivots["e002"][3] == cause


def test_a_brand_message_between_two_channels_is_not_the_customers_channel() -> None:
    seen = run(
        [ev(1, T0, "web"), ev(2, T0 + MIN, "email", "message_sent"), ev(3, T0 + 2 * MIN, "web")], T0
    )
    assert seen.pivots == {}


CHATBOT_THEN_CALL = (
    ev(1, T0, "chatbot", "contact_started", case_id="k1", topic="billing"),
    ev(2, T0 + MIN, "chatbot", "chatbot_fallback", case_id="k1", topic="billing"),
    ev(3, T0 + 3 * MIN, "chatbot", "contact_ended", case_id="k1", outcome="unresolved"),
    ev(4, T0 + 18 * MIN, "phone", "contact_started", case_id="k1", topic="billing"),
)


def test_a_handoff_sent_before_an_earlier_touchpoint_arrived_is_sent_again_with_it() -> None:
    """The call reaches the journey before the chat's end (another identity's partition was
    slower): the agent gets the hand-off at once, then the one the full history gives."""
    started, fallback, ended, call = CHATBOT_THEN_CALL
    in_order = run(list(CHATBOT_THEN_CALL), T0 + HOUR)
    seen = run([started, fallback, call, ended], T0 + HOUR)
    assert in_order.handoffs == ["e004"] and seen.handoffs == ["e004", "e004"]
    first, last = seen.sent[0], in_order.shown["e004"]
    assert seen.shown["e004"] == last and last.failure == ended
    assert [e.event_id for e in last.recent] == ["e001", "e002", "e003", "e004"]
    assert first.failure == fallback and [e.event_id for e in first.recent] == [
        "e001",
        "e002",
        "e004",
    ]


def test_a_handoff_whose_pivot_moved_to_an_earlier_touchpoint_is_retracted() -> None:
    """A purchase at the till reaches the journey before the store visit a second earlier."""
    web, visit, bought = ev(1, T0, "web"), ev(2, T0 + MIN, "store"), purchase(3, T0 + MIN + SEC)
    seen = run([web, bought, visit], T0 + HOUR)
    assert [(h.pivot.event_id, h.retracted) for h in seen.sent] == [
        ("e003", False),
        ("e003", True),
        ("e002", False),
    ]
    assert list(seen.shown) == ["e002"] and list(seen.pivots) == ["e002"]
    # A worker taking the partition over sends both again: the withdrawn one still withdrawn.
    again = JourneyCore(RULES).republish(seen.state)
    assert [(h.pivot.event_id, h.retracted) for h in again.handoffs] == [
        ("e003", True),
        ("e002", False),
    ]


def test_every_arrival_order_ends_with_the_same_handoff() -> None:
    expected = run(list(CHATBOT_THEN_CALL), T0 + HOUR).shown
    for order in permutations(CHATBOT_THEN_CALL):
        seen = run(list(order), T0 + HOUR)
        assert seen.shown == expected, [e.event_id for e in order]


def test_a_handoff_is_not_sent_again_when_what_it_shows_is_unchanged() -> None:
    """A touchpoint after the landing that arrives out of order re-stitches the profile but
    changes nothing the agent was shown."""
    seen = run(
        [ev(1, T0, "web"), ev(2, T0 + MIN, "phone"), ev(4, T0 + 5 * MIN), ev(3, T0 + 2 * MIN)],
        T0 + HOUR,
    )
    assert seen.handoffs == ["e002"]


def test_a_late_touchpoint_behind_the_horizon_changes_no_handoff() -> None:
    core, state, seen = JourneyCore(RULES), ProfileState("p-1"), Seen()
    started, fallback, ended, call = CHATBOT_THEN_CALL
    for event in (started, fallback, call):
        seen.take(core.add(state, event, None))
    seen.take(core.advance(state, call.occurred_at + RULES.allowed_lateness_ms + MIN))
    seen.take(core.add(state, ended, call.occurred_at + RULES.allowed_lateness_ms + MIN))
    assert state.events["e003"].late and seen.handoffs == ["e004"]
    assert seen.shown["e004"].failure == fallback


def test_a_merge_revealed_during_a_live_call_updates_its_handoff() -> None:
    """The survivor chatted, then called at 10:20; the loser (the same customer on another
    device) had left a cart at 10:10; the link that reveals they are one comes at 10:25, while
    the call is live: the agent gets the hand-off again, with the cart."""
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    seen = Seen()
    for event in (ev(1, T0, "chatbot", "chatbot_fallback"), ev(3, T0 + 20 * MIN, "phone")):
        seen.take(core.add(survivor, event, None))
    seen.take(core.add(loser, cart(2, T0 + 10 * MIN), None))
    seen.take(core.absorb(survivor, loser, None, cause=T0 + 25 * MIN))
    assert seen.handoffs == ["e003", "e003"] and seen.sent[0].cart is None
    assert seen.shown["e003"].cart is not None and seen.shown["e003"].cart.event_id == "e002"
    assert seen.shown["e003"].pivot.from_channel == "web"


def test_a_pivot_to_a_self_service_channel_sends_no_handoff() -> None:
    seen = run([ev(1, T0, "web", "search_no_results"), ev(2, T0 + MIN, "mobile_app")], T0)
    assert list(seen.pivots) == ["e002"] and seen.handoffs == []


def test_a_late_event_that_moves_a_pivot_retracts_the_old_one() -> None:
    core, state, seen = JourneyCore(RULES), ProfileState("p-1"), Seen()
    seen.take(core.add(state, ev(1, T0, "web"), None))
    seen.take(core.add(state, ev(3, T0 + 2 * MIN, "store"), None))
    assert seen.pivots["e003"][1] == "web"
    seen.take(core.add(state, ev(2, T0 + MIN, "store"), None))
    assert set(seen.pivots) == {"e002"}


# --- drop-offs --------------------------------------------------------------------------------


def test_a_purchase_exactly_at_the_cart_deadline_prevents_the_dropoff() -> None:
    assert run([cart(1, T0), purchase(2, T0 + HOUR)], T0 + 2 * HOUR).dropoffs == {}


def test_a_purchase_one_second_after_the_deadline_does_not() -> None:
    fired = only(run([cart(1, T0), purchase(2, T0 + HOUR + SEC)], T0 + 2 * HOUR))
    assert (fired.kind, fired.anchor.event_id, fired.deadline) == (
        "abandoned_cart",
        "e001",
        T0 + HOUR,
    )


def test_the_dropoff_fires_when_the_horizon_reaches_the_deadline_not_one_second_before() -> None:
    assert run([cart(1, T0)], T0 + HOUR - SEC).dropoffs == {}
    assert only(run([cart(1, T0)], T0 + HOUR)).deadline == T0 + HOUR


def test_a_live_watermark_waits_for_the_allowed_lateness_before_firing() -> None:
    core, state = JourneyCore(RULES), ProfileState("p-1")
    core.add(state, cart(1, T0), None)
    deadline = T0 + HOUR
    assert not core.advance(state, deadline + RULES.allowed_lateness_ms).dropoffs
    assert core.advance(state, deadline + RULES.allowed_lateness_ms + 1).dropoffs


def test_each_cart_change_restarts_the_timer_and_an_emptied_cart_fires_nothing() -> None:
    fired = only(run([cart(1, T0), cart(2, T0 + 50 * MIN, items=2)], T0 + 3 * HOUR))
    assert (fired.anchor.event_id, fired.deadline) == ("e002", T0 + 110 * MIN)
    emptied = ev(2, T0 + 10 * MIN, "web", "remove_from_cart", cart_id="c1", cart_items=0)
    assert run([cart(1, T0), emptied], T0 + 3 * HOUR).dropoffs == {}


def test_checkout_supersedes_the_cart_and_there_is_one_dropoff_per_cart() -> None:
    checkout = ev(2, T0 + 10 * MIN, "web", "checkout_started", cart_id="c1", value=40.0)
    seen = run([cart(1, T0), checkout, cart(3, T0 + 5 * HOUR)], T0 + 10 * HOUR)
    fired = only(seen)
    assert (fired.kind, fired.deadline) == ("abandoned_checkout", T0 + 40 * MIN)


def test_a_failed_contact_without_resolution_in_24h_is_abandoned() -> None:
    failed = ev(
        1, T0, "live_chat", "contact_ended", case_id="k1", topic="sizing", outcome="unresolved"
    )
    fired = only(run([failed], T0 + DAY))
    assert (fired.kind, fired.key) == ("abandoned_contact", "case:k1")
    resolved = ev(2, T0 + DAY, "phone", "contact_ended", case_id="k1", outcome="resolved")
    assert run([failed, resolved], T0 + 2 * DAY).dropoffs == {}


# --- follow-ups -------------------------------------------------------------------------------


def test_consent_gives_a_scheduled_followup_on_the_latest_consented_channel() -> None:
    events = [consent(1, T0 - DAY, "sms"), consent(2, T0 - HOUR, "email"), cart(3, T0)]
    fired = only(run(events, T0 + 2 * HOUR))
    assert (fired.status, fired.channel, fired.send_at) == ("scheduled", "email", T0 + HOUR)
    assert fired.expires_at == T0 + HOUR + DAY
    revoked = [*events, consent(4, T0 + MIN, "email", granted=False)]
    assert only(run(revoked, T0 + 2 * HOUR)).channel == "sms"


def test_without_consent_the_followup_is_suppressed_with_the_reason() -> None:
    fired = only(run([cart(1, T0)], T0 + 2 * HOUR))
    assert (fired.status, fired.reason, fired.channel, fired.send_at) == (
        "suppressed",
        "no_consent",
        None,
        None,
    )


def test_consent_given_after_the_deadline_does_not_count() -> None:
    fired = only(run([cart(1, T0), consent(2, T0 + HOUR + 1)], T0 + 2 * HOUR))
    assert fired.reason == "no_consent"


def test_a_second_cart_within_24h_is_capped_and_one_exactly_24h_later_is_not() -> None:
    for second_at, status in ((T0 + DAY - SEC, "suppressed"), (T0 + DAY, "scheduled")):
        events = [consent(1, T0 - DAY), cart(2, T0), cart(3, second_at, cart_id="c2")]
        seen = run(events, T0 + 3 * DAY)
        statuses = sorted((f.anchor.event_id, f.status, f.reason) for f in seen.dropoffs.values())
        assert statuses[0] == ("e002", "scheduled", None)
        assert statuses[1][1] == status
        assert statuses[1][2] == ("frequency_cap" if status == "suppressed" else None)


def test_a_purchase_before_send_at_cancels_and_one_after_recovers() -> None:
    paris = ZoneInfo("Europe/Paris")
    evening = int(datetime(2026, 11, 24, 21, 30, tzinfo=paris).timestamp() * 1000)
    morning = int(datetime(2026, 11, 25, 8, 0, tzinfo=paris).timestamp() * 1000)
    base = [consent(1, evening - DAY), cart(2, evening, timezone="Europe/Paris")]
    held = only(run(base, evening + 2 * HOUR))
    assert held.send_at == morning  # quiet hours: held until 08:00 local
    cancelled = run([*base, purchase(3, morning - MIN)], morning + HOUR)
    assert only(cancelled).status == "cancelled" and only(cancelled).reason == "purchased"
    assert cancelled.messages == [(held.followup_id, "cancelled")]
    recovered = only(run([*base, purchase(3, morning + 7 * DAY, value=55.0)], morning + 8 * DAY))
    assert (recovered.status, recovered.recovered_value) == ("scheduled", 55.0)
    assert (
        only(run([*base, purchase(3, morning + 7 * DAY + 1)], morning + 8 * DAY)).recovered_at
        is None
    )


def test_a_purchase_arriving_after_the_followup_was_published_cancels_it() -> None:
    core, state, seen = JourneyCore(RULES), ProfileState("p-1"), Seen()
    paris_22h = int(datetime(2026, 11, 24, 21, 0, tzinfo=UTC).timestamp() * 1000)
    for event in (consent(1, paris_22h - DAY), cart(2, paris_22h, timezone="Europe/Paris")):
        seen.take(core.add(state, event, None))
    seen.take(core.advance(state, paris_22h + 2 * HOUR, finished=True))
    assert [status for _, status in seen.messages] == ["scheduled"]
    seen.take(core.add(state, purchase(3, paris_22h + 3 * HOUR), None))
    assert [status for _, status in seen.messages] == ["scheduled", "cancelled"]


def test_the_followup_id_is_deterministic_and_a_second_run_emits_nothing_new() -> None:
    events = [consent(1, T0 - DAY), cart(2, T0)]
    first, second = run(events, T0 + 2 * HOUR), run(events, T0 + 2 * HOUR)
    assert list(first.followups) == list(second.followups)
    core, state = JourneyCore(RULES), ProfileState("p-1")
    for event in events:
        core.add(state, event, None)
    core.advance(state, T0 + 2 * HOUR, finished=True)
    again = [core.add(state, event, None) for event in events]
    assert not any(again) and not core.advance(state, T0 + 2 * HOUR, finished=True)


# --- quiet hours across time zones and DST ----------------------------------------------------


def _ms(local: datetime) -> int:
    return int(local.timestamp() * 1000)


def _local(at_ms: int, zone: str) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, ZoneInfo(zone))


def test_quiet_hours_edges() -> None:
    tz = ZoneInfo("America/New_York")
    day = datetime(2026, 7, 1, tzinfo=tz)
    cases = {
        time(20, 59, 59): time(20, 59, 59),
        time(21, 0): time(8, 0),
        time(23, 30): time(8, 0),
        time(7, 59, 59): time(8, 0),
        time(8, 0): time(8, 0),
    }
    for at, expected in cases.items():
        held = _local(
            hold_for_quiet_hours(
                _ms(day.replace(hour=at.hour, minute=at.minute, second=at.second)), tz, RULES
            ),
            "America/New_York",
        )
        assert held.time() == expected
        assert held.date() == (day.date() if at.hour < 21 else datetime(2026, 7, 2).date())


def test_quiet_hours_across_the_spring_and_autumn_dst_changes() -> None:
    tz = ZoneInfo("Europe/Paris")
    # The night of 28→29 March 2026 loses an hour: 08:00 local is 06:00 UTC, not 07:00.
    spring = hold_for_quiet_hours(_ms(datetime(2026, 3, 28, 23, 0, tzinfo=tz)), tz, RULES)
    assert datetime.fromtimestamp(spring / 1000, UTC) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    # The night of 24→25 October 2026 gains one: 08:00 local is 07:00 UTC.
    autumn = hold_for_quiet_hours(_ms(datetime(2026, 10, 24, 22, 0, tzinfo=tz)), tz, RULES)
    assert datetime.fromtimestamp(autumn / 1000, UTC) == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)


def test_the_customers_time_zone_decides_quiet_hours() -> None:
    at = (
        int(datetime(2026, 11, 24, 5, 0, tzinfo=UTC).timestamp() * 1000) - HOUR
    )  # deadline 05:00 UTC
    events = [consent(1, at - DAY), cart(2, at, timezone="Asia/Tokyo")]
    assert only(run(events, at + 2 * HOUR)).send_at == at + HOUR  # 14:00 in Tokyo: not held
    utc = [consent(1, at - DAY), cart(2, at)]
    held = only(run(utc, at + 2 * HOUR))
    assert (held.timezone, _local(held.send_at or 0, "UTC").hour) == ("UTC", 8)


def test_no_quiet_hours_when_the_rule_is_off() -> None:
    rules = replace(RULES, quiet_start=None, quiet_end=None)
    late_evening = int(datetime(2026, 11, 24, 22, 0, tzinfo=UTC).timestamp() * 1000)
    fired = only(
        run([consent(1, late_evening - DAY), cart(2, late_evening)], late_evening + 2 * HOUR, rules)
    )
    assert fired.send_at == late_evening + HOUR


# --- arrival order ----------------------------------------------------------------------------

KINDS = st.sampled_from(
    ["cart", "cart2", "checkout", "purchase", "view", "consent", "failed", "resolved"]
)


def _make(n: int, at: int, kind: str) -> EventFacts:
    return {
        "cart": lambda: cart(n, at),
        "cart2": lambda: cart(n, at, cart_id="c2"),
        "checkout": lambda: ev(n, at, "web", "checkout_started", cart_id="c1"),
        "purchase": lambda: purchase(n, at),
        "view": lambda: ev(n, at, "mobile_app"),
        "consent": lambda: consent(n, at, "sms"),
        "failed": lambda: ev(n, at, "chatbot", "contact_ended", case_id="k", outcome="failed"),
        "resolved": lambda: ev(n, at, "phone", "contact_ended", case_id="k", outcome="resolved"),
    }[kind]()


def _delivered(
    rows: list[tuple[int, str]], data: st.DataObject
) -> tuple[list[EventFacts], list[EventFacts]]:
    """The rows' touchpoints in event-time order, and as they arrive (each delayed by up to the
    allowed lateness)."""
    events = sorted(
        (_make(n, T0 + at, kind) for n, (at, kind) in enumerate(rows)), key=lambda e: e.order
    )
    return events, late_within(data, events, RULES.allowed_lateness_ms)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3 * DAY), KINDS), min_size=1, max_size=20),
    data=st.data(),
)
def test_arrival_order_within_the_allowed_lateness_changes_no_detection(
    rows: list[tuple[int, str]], data: st.DataObject
) -> None:
    results = []
    for order in _delivered(rows, data):
        seen = live(JourneyCore(RULES), order)
        assert not any(e.late for e in seen.state.events.values())
        shown = {eid: h.fingerprint for eid, h in seen.shown.items()}
        results.append((seen.pivots, seen.dropoffs, seen.followups, shown))
    assert results[0] == results[1]


def test_a_merge_publishes_the_losers_pivots_and_dropoffs_again_under_the_survivor() -> None:
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    core.add(survivor, ev(1, T0 - DAY, "store"), None)
    core.add(loser, ev(2, T0, "web"), None)
    core.add(loser, ev(3, T0 + MIN, "mobile_app"), None)
    core.add(loser, cart(4, T0 + 2 * MIN), None)
    assert core.advance(loser, T0 + 2 * HOUR, finished=True).dropoffs
    out = core.absorb(survivor, loser, T0 + 2 * HOUR, finished=True)
    assert out.profile_id == "p-1"
    # store → web (the histories join into one journey), web → app, app → web: all re-sent.
    assert [p.event_id for p in out.pivots] == ["e002", "e003", "e004"]
    assert [f.anchor.event_id for f in out.dropoffs] == ["e004"]
    assert [f.followup_id for f in out.followups] == [f.followup_id for f in out.dropoffs]
    assert out.dropoffs[0].journey_id == out.pivots[0].journey_id


def test_republish_sends_everything_again_with_a_higher_version() -> None:
    core, state = JourneyCore(RULES), ProfileState("p-1")
    for event in (consent(1, T0 - DAY), ev(2, T0, "web", "search_no_results"), cart(3, T0 + MIN)):
        core.add(state, event, None)
    [handoff] = core.add(state, ev(4, T0 + 2 * MIN, "phone"), None).handoffs
    before = core.advance(state, T0 + 2 * HOUR, finished=True)
    again = core.republish(state)
    assert again.version > before.version
    assert {a.event.event_id for a in again.assignments} == {"e001", "e002", "e003", "e004"}
    assert [p.event_id for p in again.pivots] == ["e004"]
    assert again.handoffs == [handoff]
    assert (
        [f.anchor.event_id for f in again.dropoffs]
        == ["e003"]
        == [f.anchor.event_id for f in again.followups]
    )
    assert {j.version for j in again.journeys} == {again.version}


def test_a_merge_that_reveals_consent_plans_the_followup_again() -> None:
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    core.add(loser, consent(1, T0 - DAY, "sms"), None)
    core.add(survivor, cart(2, T0), None)
    fired = core.advance(survivor, T0 + 2 * HOUR, finished=True).followups
    assert [(f.status, f.reason) for f in fired] == [("suppressed", "no_consent")]
    out = core.absorb(survivor, loser, T0 + 2 * HOUR, finished=True)
    assert [(f.followup_id, f.status, f.channel) for f in out.followups] == [
        (fired[0].followup_id, "scheduled", "sms")
    ]
    # The same history as one profile from the start gives the same follow-up.
    assert only(run([consent(1, T0 - DAY, "sms"), cart(2, T0)], T0 + 2 * HOUR)).channel == "sms"


def test_absorbing_the_same_loser_twice_changes_nothing_the_second_time() -> None:
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    core.add(survivor, ev(1, T0, "store"), None)
    for event in (consent(2, T0 + MIN), cart(3, T0 + 2 * MIN), ev(4, T0 + 3 * MIN, "phone")):
        core.add(loser, event, None)
    core.advance(loser, T0 + 2 * HOUR, finished=True)
    copy = ProfileState.from_json(loser.to_json())
    assert core.absorb(survivor, loser, T0 + 2 * HOUR, finished=True)
    assert not core.absorb(survivor, copy, T0 + 2 * HOUR, finished=True)


def test_a_late_merge_that_brings_a_purchase_in_time_retracts_the_dropoff() -> None:
    """The anonymous cart fired on its own profile (the login that links it came after the
    deadline); the customer's profile bought in a store before that deadline."""
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    for event in (consent(1, T0 - DAY), cart(2, T0)):
        core.add(loser, event, None)
    fired = core.advance(loser, T0 + 2 * HOUR, finished=True)
    assert [(f.status, f.retracted) for f in fired.followups] == [("scheduled", False)]
    core.add(survivor, purchase(3, T0 + 30 * MIN), None)
    out = core.absorb(survivor, loser, T0 + 2 * HOUR, finished=True)
    assert [(f.followup_id, f.retracted) for f in out.dropoffs] == [
        (fired.followups[0].followup_id, True)
    ]
    assert [(f.status, f.reason) for f in out.followups] == [("cancelled", "retracted")]
    # As if the profiles had always been one: nothing fires.
    assert not run(
        [consent(1, T0 - DAY), cart(2, T0), purchase(3, T0 + 30 * MIN)], T0 + 2 * HOUR
    ).dropoffs


def test_a_merge_that_moves_the_carts_deadline_retracts_and_fires_the_later_anchor() -> None:
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    core.add(loser, cart(1, T0), None)
    first = core.advance(loser, T0 + 3 * HOUR, finished=True).dropoffs
    core.add(survivor, cart(2, T0 + 50 * MIN, items=2), None)
    core.advance(survivor, T0 + 30 * MIN, finished=False)
    out = core.absorb(survivor, loser, T0 + 3 * HOUR, finished=True)
    published = {(f.anchor.event_id, f.retracted) for f in out.dropoffs}
    assert published == {(first[0].anchor.event_id, True), ("e002", False)}
    expected = only(run([cart(1, T0), cart(2, T0 + 50 * MIN, items=2)], T0 + 3 * HOUR))
    assert survivor.fired["cart:c1"].anchor == expected.anchor


def test_a_merge_that_changes_nothing_about_a_dropoff_keeps_it() -> None:
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    core.add(loser, cart(1, T0), None)
    core.advance(loser, T0 + 2 * HOUR, finished=True)
    core.add(survivor, purchase(2, T0 + 90 * MIN), None)
    out = core.absorb(survivor, loser, T0 + 2 * HOUR, finished=True)
    assert [f.retracted for f in out.dropoffs] == [False]


def test_a_survey_answer_on_another_channel_is_no_pivot() -> None:
    """A score by e-mail after a web visit answers the brand's survey: the customer did not move."""
    from parcours.streams.detect import Left, pivot_of
    from parcours.streams.facts import EventFacts
    from parcours.streams.rules import Rules

    web = EventFacts(event_id="a", occurred_at=0, channel="web", action="product_view")
    score = EventFacts(event_id="b", occurred_at=60_000, channel="email", action="feedback")
    assert pivot_of(Left.of(web), score, "j", Rules()) is None


# --- bounded state: pruning past the horizon ----------------------------------------------------

RETENTION = RULES.retention_ms


class KeepEverything(JourneyCore):
    """The core as it was before pruning: the reference pruning must not be visible against."""

    def _prune(self, state: ProfileState, out: Outputs, cut: int) -> None:
        return None


class Rows(Seen):
    """:class:`Seen`, plus the latest journey and placement rows (what the sink ends with)."""

    def __init__(self) -> None:
        super().__init__()
        self.journeys: dict[str, tuple[object, ...]] = {}
        self.placed: dict[str, tuple[str, str]] = {}
        self.pruned: list[str] = []

    def take(self, out: Outputs) -> Outputs:
        super().take(out)
        for j in out.journeys:
            self.journeys[j.journey_id] = (j.profile_id, j.status, j.channels, j.touchpoints)
        for a in out.assignments:
            self.placed[a.event.event_id] = (a.profile_id, a.session_id)
        self.pruned += out.pruned
        return out

    def tables(self) -> tuple[object, ...]:
        shown = {eid: h.fingerprint for eid, h in self.shown.items()}
        return self.journeys, self.placed, self.pivots, self.dropoffs, self.followups, shown


def live(core: JourneyCore, events: list[EventFacts], state: ProfileState | None = None) -> Rows:
    """Feed in arrival order with the watermark at the latest event time seen, then finish."""
    rows, mark = Rows(), None
    rows.state = state or ProfileState("p-1")
    for event in events:
        rows.take(core.add(rows.state, event, mark))
        mark = max(mark or 0, event.occurred_at)
        rows.take(core.advance(rows.state, mark))
    rows.take(core.advance(rows.state, (mark or 0) + 2 * DAY, finished=True))
    return rows


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 60 * DAY), KINDS), min_size=1, max_size=40),
    data=st.data(),
)
def test_pruning_past_the_horizon_changes_no_row_and_no_message(
    rows: list[tuple[int, str]], data: st.DataObject
) -> None:
    """Two months of one customer, arriving within the allowed lateness: the tables and the
    messages are those of a core that keeps everything, and what is left is the retention."""
    events, arrival = _delivered(rows, data)
    pruned, kept = live(JourneyCore(RULES), arrival), live(KeepEverything(RULES), arrival)
    assert pruned.tables() == kept.tables()
    horizon = pruned.state.horizon or 0
    assert all(j.last_at >= horizon - RETENTION for j in pruned.state.published.values())
    old = [e.event_id for e in events if e.occurred_at < horizon - RETENTION - 7 * DAY]
    assert set(old) <= set(pruned.pruned)
    assert not set(pruned.pruned) & set(pruned.state.events)


def test_a_year_of_weekly_visits_keeps_the_state_of_the_last_weeks() -> None:
    """A customer who shops every eight days for a year: the profile holds the last weeks'
    touchpoints, twenty archived journey summaries, and still knows the consent given first."""
    core, state, sizes = JourneyCore(RULES), ProfileState("p-1"), {}
    live(core, [consent(0, T0 - HOUR)], state)
    for week in range(46):
        at = T0 + week * 8 * DAY
        visit = [
            cart(3 * week + 1, at, cart_id=f"c{week}"),
            ev(3 * week + 2, at + MIN, "mobile_app"),
        ]
        if week % 2:
            visit.append(purchase(3 * week + 3, at + 2 * MIN))
        live(core, visit, state)
        sizes[week] = len(orjson.dumps(state.to_json()))
    assert len(state.events) <= 2 * 3 * (RETENTION // (8 * DAY) + 2)
    assert len(state.archived) == 20
    assert sizes[45] < 1.1 * sizes[30]
    # A cart left in the last weeks is followed up by e-mail: the consent is a year old.
    followups = [f for f in state.fired.values() if f.anchor.event_id == "e133"]
    assert [f.channel for f in followups] == ["email"]


def test_a_cart_fires_again_only_once_its_key_is_no_longer_remembered() -> None:
    memory = RULES.key_memory_ms
    for gap, fires in ((5 * DAY, 1), (memory + HOUR, 2)):
        seen = run([consent(0, T0 - HOUR), cart(1, T0), cart(2, T0 + gap)], T0 + gap + DAY)
        assert len({followup for followup, _ in seen.messages}) == fires, gap


def test_a_handoff_still_shows_a_cart_left_in_an_earlier_journey_within_the_retention() -> None:
    """Nine days after an abandoned cart (an earlier journey) the customer walks into a store:
    the hand-off shows the cart, as it would had nothing been pruned."""
    visit = [cart(1, T0), ev(2, T0 + 9 * DAY, "mobile_app"), ev(3, T0 + 9 * DAY + MIN, "store")]
    pruned, kept = live(JourneyCore(RULES), visit), live(KeepEverything(RULES), visit)
    assert pruned.tables() == kept.tables()
    assert [h.cart.event_id for h in pruned.sent if h.cart] == ["e001"]


def test_a_merge_leaves_history_settled_before_its_cause_where_it_was() -> None:
    """Both profiles have a journey a month before the merge and one just before it. The recent
    ones are stitched as one profile; the old ones stay as they were (the loser's touchpoint
    keeps its profile id), whether or not either side had pruned them when the merge came."""
    mine = [ev(1, T0, "web"), ev(3, T0 + 30 * DAY, "mobile_app")]
    theirs = [ev(2, T0 + DAY, "web"), cart(4, T0 + 29 * DAY)]
    cause = T0 + 30 * DAY + HOUR
    results = []
    for live_time in (False, True):
        core, rows = JourneyCore(RULES), Rows()
        survivor, loser = ProfileState("p-1"), ProfileState("p-2")
        for state, events in ((survivor, mine), (loser, theirs)):
            for event in events:
                rows.take(core.add(state, event, event.occurred_at if live_time else None))
            if live_time:  # time reaches the merge: each side prunes its old journey first
                rows.take(core.advance(state, cause - HOUR))
                assert len(state.events) == 1
        watermark = cause - HOUR if live_time else None
        rows.take(core.absorb(survivor, loser, watermark, cause=cause))
        rows.take(core.advance(survivor, cause + 2 * DAY, finished=True))
        results.append(rows.tables())
        assert set(survivor.events) == {"e003", "e004"}
    assert results[0] == results[1]
    placed = results[0][1]
    assert isinstance(placed, dict)
    assert {eid: where[0] for eid, where in placed.items()} == {
        "e001": "p-1",
        "e002": "p-2",
        "e003": "p-1",
        "e004": "p-1",
    }
    assert placed["e003"][1].split("/")[0] == placed["e004"][1].split("/")[0]


def test_a_late_consent_does_not_count_once_pruned_either() -> None:
    """Consent from a touchpoint that arrives a month late is not used (it is flagged late);
    pruned later with its journey, it must not turn into consent that counts."""
    arrival = [cart(1, T0 + 40 * DAY), consent(2, T0 + DAY), cart(3, T0 + 60 * DAY, cart_id="c2")]
    pruned, kept = live(JourneyCore(RULES), arrival), live(KeepEverything(RULES), arrival)
    assert {"e001", "e002"} <= set(pruned.pruned)
    assert pruned.tables() == kept.tables()
    assert {f.status for f in pruned.state.fired.values()} == {"suppressed"}


def test_old_history_replayed_into_a_running_profile_keeps_its_journeys_whole() -> None:
    """Months-old touchpoints replayed after time has moved on are all late: they are stitched
    together as they come, not pruned one by one before the next arrives."""
    now = [ev(1, T0 + 90 * DAY, "web")]
    old = [ev(2, T0, "web"), ev(3, T0 + 5 * MIN, "mobile_app"), ev(4, T0 + 10 * MIN, "store")]
    pruned, kept = live(JourneyCore(RULES), now + old), live(KeepEverything(RULES), now + old)
    assert pruned.tables() == kept.tables()
    assert sorted(j[3] for j in pruned.journeys.values()) == [1, 3]
