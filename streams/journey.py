"""The journey core, pure and deterministic: a profile's state + an event → new state + outputs.

A profile keeps the facts of its events. Journeys and sessions are *stitched* from those facts
sorted by ``(occurred_at, event_id)`` each time they change, so the result depends only on the set
of events (and the watermark for idle expiry): any arrival order and any duplication give the same
journeys, and a merged profile is stitched exactly as if it had always been one. What changed since
the last publication is returned as outputs; the faust agent publishes them. No Kafka in here.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

PURCHASE = "purchase"
BRAND_ACTIONS = frozenset({"message_sent"})
"""The brand speaking, not the customer choosing a channel: never a pivot, never a journey channel."""


@dataclass(frozen=True)
class Rules:
    session_idle_ms: int = 30 * 60 * 1000
    journey_idle_ms: int = 7 * 86400 * 1000
    allowed_lateness_ms: int = 10 * 60 * 1000


@dataclass(frozen=True)
class EventFacts:
    """What stitching needs from one touchpoint; ``payload`` is carried through untouched."""

    event_id: str
    occurred_at: int
    channel: str
    action: str
    payload: str = ""
    late: bool = False

    @property
    def order(self) -> tuple[int, str]:
        return self.occurred_at, self.event_id


@dataclass(frozen=True)
class JourneySummary:
    journey_id: str
    profile_id: str
    started_at: int
    last_at: int
    status: str
    channels: tuple[str, ...]
    touchpoints: int
    pivots: int
    sessions: int
    late_touchpoints: int
    # Not part of equality: "did the journey change?" compares content, not publications.
    version: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JourneySummary:
        return cls(**(data | {"channels": tuple(data["channels"])}))


@dataclass(frozen=True)
class Assignment:
    """A touchpoint's place: the sink (re)writes its row with this profile, journey and session."""

    event: EventFacts
    profile_id: str
    journey_id: str
    session_id: str
    """``journey_id/n``: the journey's n-th session (30 minutes of silence start the next one)."""
    version: int


def _assignment(event: EventFacts, profile: str, place: str, version: int) -> Assignment:
    journey, _, _ = place.partition("/")
    return Assignment(event, profile, journey, place, version)


@dataclass
class Outputs:
    journeys: list[JourneySummary] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)


def journey_id(first_event_id: str) -> str:
    return "j-" + hashlib.blake2b(first_event_id.encode(), digest_size=10).hexdigest()


@dataclass
class _Open:
    """The journey being built: what its summary needs, updated one event at a time."""

    journey_id: str
    started_at: int
    last_at: int
    channels: list[str] = field(default_factory=list)
    touchpoints: int = 0
    pivots: int = 0
    sessions: int = 0
    late: int = 0
    last_customer_channel: str | None = None

    def take(self, event: EventFacts, rules: Rules) -> None:
        if self.touchpoints == 0 or event.occurred_at - self.last_at >= rules.session_idle_ms:
            self.sessions += 1
        self.touchpoints += 1
        self.late += event.late
        self.last_at = event.occurred_at
        if event.action in BRAND_ACTIONS:
            return
        if event.channel not in self.channels:
            self.channels.append(event.channel)
        if self.last_customer_channel not in (None, event.channel):
            self.pivots += 1
        self.last_customer_channel = event.channel

    def close(self, profile: str, status: str) -> JourneySummary:
        return JourneySummary(
            journey_id=self.journey_id,
            profile_id=profile,
            started_at=self.started_at,
            last_at=self.last_at,
            status=status,
            channels=tuple(self.channels),
            touchpoints=self.touchpoints,
            pivots=self.pivots,
            sessions=self.sessions,
            late_touchpoints=self.late,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Open:
        return cls(**(data | {"channels": list(data["channels"])}))


@dataclass
class _Stitch:
    """Journeys cut so far from events taken in ``(occurred_at, event_id)`` order."""

    profile: str
    rules: Rules
    closed: list[JourneySummary] = field(default_factory=list)
    current: _Open | None = None
    placed: dict[str, str] = field(default_factory=dict)

    def take(self, event: EventFacts) -> None:
        current = self.current
        if (
            current is not None
            and event.occurred_at - current.last_at >= self.rules.journey_idle_ms
        ):
            self.closed.append(current.close(self.profile, "expired"))
            current = None
        if current is None:
            current = _Open(journey_id(event.event_id), event.occurred_at, event.occurred_at)
        current.take(event, self.rules)
        self.placed[event.event_id] = f"{current.journey_id}/{current.sessions}"
        if event.action == PURCHASE:
            self.closed.append(current.close(self.profile, "converted"))
            current = None
        self.current = current

    def journeys(self, watermark: int | None) -> list[JourneySummary]:
        if self.current is None:
            return self.closed
        idle = (
            watermark is not None and watermark - self.current.last_at >= self.rules.journey_idle_ms
        )
        return [*self.closed, self.current.close(self.profile, "expired" if idle else "open")]


def _cut(profile: str, events: list[EventFacts], rules: Rules) -> _Stitch:
    cut = _Stitch(profile, rules)
    for event in sorted(events, key=lambda e: e.order):
        cut.take(event)
    return cut


@dataclass
class ProfileState:
    """Everything the journey stage keeps for one profile (JSON in a faust table)."""

    profile_id: str
    events: dict[str, EventFacts] = field(default_factory=dict)
    published: dict[str, JourneySummary] = field(default_factory=dict)
    # event_id → "journey_id/session number": where each touchpoint was last published.
    placed: dict[str, str] = field(default_factory=dict)
    version: int = 0
    merged_into: str | None = None
    # The latest event's order and its open journey, so an event that comes after every other
    # one (the usual case) extends the journey instead of re-stitching the whole profile.
    last: tuple[int, str] | None = None
    tail: _Open | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "last": list(self.last) if self.last else None,
            "tail": self.tail.to_json() if self.tail else None,
            "profile_id": self.profile_id,
            "events": [asdict(e) for e in self.events.values()],
            "published": [j.to_json() for j in self.published.values()],
            "placed": self.placed,
            "version": self.version,
            "merged_into": self.merged_into,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileState:
        events = [EventFacts(**e) for e in data["events"]]
        published = [JourneySummary.from_json(j) for j in data["published"]]
        return cls(
            profile_id=data["profile_id"],
            events={e.event_id: e for e in events},
            published={j.journey_id: j for j in published},
            placed=dict(data["placed"]),
            version=data["version"],
            merged_into=data["merged_into"],
            last=(int(data["last"][0]), str(data["last"][1])) if data.get("last") else None,
            tail=_Open.from_json(data["tail"]) if data.get("tail") else None,
        )


class JourneyCore:
    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()

    def is_late(self, occurred_at: int, watermark: int | None) -> bool:
        return watermark is not None and occurred_at < watermark - self.rules.allowed_lateness_ms

    def add(self, state: ProfileState, event: EventFacts, watermark: int | None) -> Outputs:
        """One touchpoint for this profile; a duplicate ``event_id`` changes nothing."""
        if event.event_id in state.events:
            return Outputs()
        late = self.is_late(event.occurred_at, watermark)
        if late != event.late:
            event = replace(event, late=late)
        state.events[event.event_id] = event
        if state.last is not None and event.order > state.last:
            return self._append(state, event, watermark)
        return self._restitch(state, watermark)

    def _append(self, state: ProfileState, event: EventFacts, watermark: int | None) -> Outputs:
        """``event`` comes after all others: only the last journey can change (same result as
        a full re-stitch, which the property tests check)."""
        cut = _Stitch(state.profile_id, self.rules, current=state.tail)
        cut.take(event)
        state.last, state.tail = event.order, cut.current
        changed = [j for j in cut.journeys(watermark) if state.published.get(j.journey_id) != j]
        state.version += 1
        out = Outputs()
        for summary in changed:
            out.journeys.append(_versioned(summary, state.version))
            state.published[summary.journey_id] = out.journeys[-1]
        place = cut.placed[event.event_id]
        out.assignments.append(_assignment(event, state.profile_id, place, state.version))
        state.placed[event.event_id] = place
        return out

    def absorb(self, state: ProfileState, loser: ProfileState, watermark: int | None) -> Outputs:
        """``loser``'s events and journeys now belong to ``state``: stitch them as one history."""
        for event_id, event in loser.events.items():
            state.events.setdefault(event_id, event)
        for jid, summary in loser.published.items():
            state.published.setdefault(jid, summary)
        state.version = max(state.version, loser.version)
        # Every absorbed event changes profile, so each is re-placed even if its journey is unchanged.
        for event_id in loser.events:
            state.placed.pop(event_id, None)
        return self._restitch(state, watermark)

    def advance(self, state: ProfileState, watermark: int | None) -> Outputs:
        """Time passed: an open journey may now have expired."""
        return self._restitch(state, watermark)

    def _restitch(self, state: ProfileState, watermark: int | None) -> Outputs:
        cut = _cut(state.profile_id, list(state.events.values()), self.rules)
        journeys, placed = cut.journeys(watermark), cut.placed
        state.tail = cut.current
        state.last = max((e.order for e in state.events.values()), default=None)
        current = {j.journey_id: j for j in journeys}
        changed = [j for j in journeys if state.published.get(j.journey_id) != j]
        gone = [j for jid, j in state.published.items() if jid not in current]
        moved = [eid for eid, jid in placed.items() if state.placed.get(eid) != jid]
        if not (changed or moved or any(j.status != "superseded" for j in gone)):
            return Outputs()
        state.version += 1
        out = Outputs()
        for summary in changed:
            out.journeys.append(_versioned(summary, state.version))
        for summary in gone:
            if summary.status != "superseded":
                out.journeys.append(
                    _versioned(
                        summary, state.version, status="superseded", profile=state.profile_id
                    )
                )
        for eid in sorted(moved, key=lambda e: state.events[e].order):
            out.assignments.append(
                _assignment(state.events[eid], state.profile_id, placed[eid], state.version)
            )
        for summary in out.journeys:
            state.published[summary.journey_id] = summary
        state.placed = placed
        return out


def _versioned(
    summary: JourneySummary, version: int, *, status: str | None = None, profile: str | None = None
) -> JourneySummary:
    return replace(
        summary,
        version=version,
        status=status or summary.status,
        profile_id=profile or summary.profile_id,
    )
