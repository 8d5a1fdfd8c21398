"""The journey core, alone: stitching rules at their edges, order and duplicates, merges."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from parcours.streams.journey import (
    EventFacts,
    JourneyCore,
    JourneySummary,
    Outputs,
    ProfileState,
    Rules,
    journey_id,
)

from tests.unit.streams.arrivals import late_within

MIN = 60_000
DAY = 86_400_000
RULES = Rules()


def ev(n: int, at: int, channel: str = "web", action: str = "page_view") -> EventFacts:
    return EventFacts(f"e{n:03d}", at, channel, action)


class Published:
    """What analysts end up seeing: the latest version per journey and per touchpoint."""

    def __init__(self) -> None:
        self.journeys: dict[str, JourneySummary] = {}
        self.placed: dict[str, tuple[str, str, int]] = {}
        self.sessions: dict[str, str] = {}

    def take(self, out: Outputs) -> None:
        for j in out.journeys:
            if j.journey_id not in self.journeys or self.journeys[j.journey_id].version < j.version:
                self.journeys[j.journey_id] = j
        for a in out.assignments:
            known = self.placed.get(a.event.event_id)
            if known is None or known[2] < a.version:
                self.placed[a.event.event_id] = (a.profile_id, a.journey_id, a.version)
                self.sessions[a.event.event_id] = a.session_id

    def current(self) -> dict[str, tuple[object, ...]]:
        return {
            jid: (
                j.profile_id,
                j.started_at,
                j.last_at,
                j.status,
                j.channels,
                j.touchpoints,
                j.pivots,
                j.sessions,
            )
            for jid, j in self.journeys.items()
            if j.status != "superseded"
        }

    def events(self) -> dict[str, tuple[str, str, str]]:
        return {eid: (p, j, self.sessions[eid]) for eid, (p, j, _) in self.placed.items()}


def feed(events: list[EventFacts], watermark: int | None = None) -> Published:
    core, state, seen = JourneyCore(RULES), ProfileState("p-1"), Published()
    for event in events:
        seen.take(core.add(state, event, watermark))
    seen.take(core.advance(state, watermark))
    return seen


def test_a_purchase_converts_the_journey_and_the_next_event_starts_another() -> None:
    seen = feed([ev(1, 0), ev(2, MIN, "store", "purchase"), ev(3, 2 * MIN)])
    journeys = sorted(seen.current().values(), key=lambda j: j[1])  # type: ignore[arg-type,return-value]
    assert [j[3] for j in journeys] == ["converted", "open"]
    assert journeys[0][4] == ("web", "store") and journeys[0][6] == 1


def test_seven_days_idle_expires_exactly_at_the_boundary() -> None:
    assert len(feed([ev(1, 0), ev(2, 7 * DAY - 1)]).current()) == 1
    statuses = sorted(j[3] for j in feed([ev(1, 0), ev(2, 7 * DAY)]).current().values())  # type: ignore[type-var]
    assert statuses == ["expired", "open"]


def test_the_watermark_expires_an_idle_open_journey() -> None:
    assert [j[3] for j in feed([ev(1, 0)], watermark=7 * DAY - 1).current().values()] == ["open"]
    assert [j[3] for j in feed([ev(1, 0)], watermark=7 * DAY).current().values()] == ["expired"]


def test_sessions_split_after_thirty_minutes_of_silence() -> None:
    seen = feed([ev(1, 0), ev(2, 30 * MIN - 1), ev(3, 60 * MIN - 1)])
    assert [j[7] for j in seen.current().values()] == [2]
    journey = journey_id("e001")
    assert [s for _, _, s in seen.events().values()] == [
        f"{journey}/1",
        f"{journey}/1",
        f"{journey}/2",
    ]


def test_brand_messages_are_neither_a_channel_nor_a_pivot() -> None:
    seen = feed([ev(1, 0, "web"), ev(2, MIN, "email", "message_sent"), ev(3, 2 * MIN, "web")])
    ((_, _, _, _, channels, touchpoints, pivots, _),) = seen.current().values()
    assert (channels, touchpoints, pivots) == (("web",), 3, 0)


def test_a_channel_switch_counts_one_pivot() -> None:
    seen = feed([ev(1, 0, "chatbot", "chatbot_fallback"), ev(2, MIN, "phone", "contact_started")])
    assert [j[6] for j in seen.current().values()] == [1]


def test_an_event_past_the_allowed_lateness_is_stored_and_counted_as_late() -> None:
    core, state = JourneyCore(RULES), ProfileState("p-1")
    core.add(state, ev(1, 60 * MIN), watermark=60 * MIN)
    out = core.add(state, ev(2, 50 * MIN - 1), watermark=60 * MIN)
    # It is now the journey's first touchpoint, so both are (re)placed; only it is late.
    assert {a.event.event_id: a.event.late for a in out.assignments} == {
        "e001": False,
        "e002": True,
    }
    assert out.journeys[0].late_touchpoints == 1 and out.journeys[0].touchpoints == 2
    on_time = core.add(state, ev(3, 50 * MIN), watermark=60 * MIN)
    assert [a.event.late for a in on_time.assignments] == [False]


def test_a_duplicate_changes_nothing() -> None:
    core, state = JourneyCore(RULES), ProfileState("p-1")
    core.add(state, ev(1, 0), None)
    out = core.add(state, ev(1, 0), None)
    assert out == Outputs()


def test_an_earlier_event_supersedes_the_journey_it_now_starts() -> None:
    core, state, seen = JourneyCore(RULES), ProfileState("p-1"), Published()
    seen.take(core.add(state, ev(2, MIN), None))
    seen.take(core.add(state, ev(1, 0), None))
    assert seen.journeys[journey_id("e002")].status == "superseded"
    assert set(seen.current()) == {journey_id("e001")}
    first = journey_id("e001")
    assert seen.events() == {
        "e001": ("p-1", first, f"{first}/1"),
        "e002": ("p-1", first, f"{first}/1"),
    }


ACTIONS = st.sampled_from(["page_view", "add_to_cart", "purchase", "message_sent", "search"])
CHANNELS = st.sampled_from(["web", "mobile_app", "store", "email", "phone"])
EVENT_TIMES = st.lists(
    st.tuples(st.integers(0, 9 * DAY), CHANNELS, ACTIONS), min_size=1, max_size=25
)


@settings(max_examples=200, deadline=None)
@given(rows=EVENT_TIMES, data=st.data())
def test_any_order_and_any_duplication_give_the_same_journeys(
    rows: list[tuple[int, str, str]], data: st.DataObject
) -> None:
    events = [ev(n, at, channel, action) for n, (at, channel, action) in enumerate(rows)]
    shuffled = data.draw(st.permutations(events))
    doubled = shuffled + data.draw(st.lists(st.sampled_from(events), max_size=10))
    in_order, disordered = feed(sorted(events, key=lambda e: e.order)), feed(doubled)
    assert disordered.current() == in_order.current()
    assert disordered.events() == in_order.events()


@settings(max_examples=100, deadline=None)
@given(rows=EVENT_TIMES, data=st.data())
def test_within_the_allowed_lateness_order_does_not_matter_with_a_watermark(
    rows: list[tuple[int, str, str]], data: st.DataObject
) -> None:
    """Arrivals at most the allowed lateness out of order, watermark = latest event time seen."""
    events = sorted(
        (ev(n, at, channel, action) for n, (at, channel, action) in enumerate(rows)),
        key=lambda e: e.order,
    )
    arrival = late_within(data, events, RULES.allowed_lateness_ms)
    results = []
    for order in (events, arrival):
        core, state, seen, mark = JourneyCore(RULES), ProfileState("p-1"), Published(), None
        for event in order:
            seen.take(core.add(state, event, mark))
            mark = max(mark or 0, event.occurred_at)
        assert not any(e.late for e in state.events.values())
        results.append(seen.current())
    assert results[0] == results[1]


@settings(max_examples=100, deadline=None)
@given(rows=EVENT_TIMES, data=st.data())
def test_a_merged_profile_is_stitched_as_if_it_had_always_been_one(
    rows: list[tuple[int, str, str]], data: st.DataObject
) -> None:
    events = [ev(n, at, channel, action) for n, (at, channel, action) in enumerate(rows)]
    mine = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    core, survivor, loser, seen = (
        JourneyCore(RULES),
        ProfileState("p-1"),
        ProfileState("p-2"),
        Published(),
    )
    for event, is_mine in zip(events, mine, strict=True):
        seen.take(core.add(survivor if is_mine else loser, event, None))
    seen.take(core.absorb(survivor, loser, None))
    assert seen.current() == feed(events).current()
    assert seen.events() == feed(events).events()


# --- identities as of a moment ----------------------------------------------------------------

SEEN = [("email_sha256", f"h{n:02d}", 1_000 + 7 * n % 31) for n in range(30)]
"""30 e-mail hashes, each first seen at its own time, in no particular order."""


@settings(max_examples=50, deadline=None)
@given(order=st.permutations([*SEEN, ("email_sha256", "h03", 5), ("crm_id", "c1", 1_010)]))
def test_identities_as_of_a_moment_do_not_depend_on_the_order_they_came_in(
    order: list[tuple[str, str, int]],
) -> None:
    state = ProfileState("p-1")
    for kind, value, at in order:
        state.learn_identities({kind: value}, at)
    # h03 was also seen earlier (5) than its first arrival in SEEN: the earliest time counts.
    assert state.identities_at(1_009)["email_sha256"][0] == "h03"
    assert "crm_id" not in state.identities_at(1_009)
    assert list(state.identities_at(1_010)) == ["crm_id", "email_sha256"]
    # Past the cap the earliest values are kept, whichever came first.
    earliest = sorted((min(at for k, v, at in order if v == value), value) for _, value, _ in SEEN)
    expected = [value for _, value in sorted(set(earliest))[:20]]
    assert state.identities_at(10_000)["email_sha256"] == expected


def test_a_merge_brings_the_losers_identities_from_its_cause_on() -> None:
    core, survivor, loser = JourneyCore(RULES), ProfileState("p-1"), ProfileState("p-2")
    survivor.learn_identities({"crm_id": "c1"}, 100)
    loser.learn_identities({"email_sha256": "h1"}, 50)
    core.add(survivor, ev(1, 100), None)
    core.add(loser, ev(2, 50), None)
    core.absorb(survivor, loser, None, cause=300)
    assert survivor.identities_at(299) == {"crm_id": ["c1"]}
    assert survivor.identities_at(300) == {"crm_id": ["c1"], "email_sha256": ["h1"]}
    saved = ProfileState.from_json(survivor.to_json())
    assert saved.identities_at(300) == survivor.identities_at(300)
    old = survivor.to_json() | {"identities": {"crm_id": ["c1"]}}
    assert ProfileState.from_json(old).identities_at(0) == {"crm_id": ["c1"]}
