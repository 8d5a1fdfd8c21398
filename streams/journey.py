"""The journey core, pure and deterministic: a profile's state + an event → new state + outputs.

A profile keeps the facts of its events. Journeys and sessions are *stitched* from those facts
sorted by ``(occurred_at, event_id)`` each time they change, so the result depends only on the set
of events (and the watermark for idle expiry): any arrival order and any duplication give the same
journeys, and a merged profile is stitched as if it had always been one, back to a retention before
the merge's cause. Journeys a retention behind the horizon are pruned (``Rules.retention_ms``):
nothing can change or read them any more. What changed since the last publication is returned as
outputs; the faust agent publishes them. No Kafka in here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from parcours.streams.detect import (
    SCHEDULED,
    Dropoff,
    Fired,
    Handoff,
    Left,
    Pivot,
    arm,
    arming_deadline,
    handoff_of,
    pivot_of,
    plan_followup,
    scan_dropoffs,
    settle,
    zone,
)
from parcours.streams.facts import PURCHASE, EventFacts, flat
from parcours.streams.rules import Rules

__all__ = [
    "Assignment",
    "EventFacts",
    "JourneyCore",
    "JourneySummary",
    "Outputs",
    "ProfileState",
    "Rules",
]

IDENTITY_VALUES_KEPT = 20
"""Values kept per identity type for hand-offs (a shared kiosk must not grow a profile forever)."""
EVERY_LANDING = -(2**63)
"""``since`` that takes in every landing touchpoint."""
RETRACTED = "retracted"
"""In ``ProfileState.handed_off``: the hand-off was withdrawn (its pivot disappeared)."""
ARCHIVED_JOURNEYS_KEPT = 20
"""Summaries of pruned journeys a profile keeps (the newest; every one is in ClickHouse)."""
KEPT = "kept"
"""The action of a stand-in for a pruned touchpoint whose consent or time zone still counts."""


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
        data: dict[str, Any] = flat(self)  # (mypy sees parcours.* imports as Any)
        return data | {"channels": list(self.channels)}

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
    pivots: list[Pivot] = field(default_factory=list)
    retracted_pivots: list[Pivot] = field(default_factory=list)
    """Pivots a re-stitch (a late event, a merge) made disappear."""
    handoffs: list[Handoff] = field(default_factory=list)
    dropoffs: list[Fired] = field(default_factory=list)
    """Drop-offs that fired or changed (recovered, moved to another journey)."""
    followups: list[Fired] = field(default_factory=list)
    """Follow-ups that were created or changed status."""
    version: int = 0
    profile_id: str = ""
    identities: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Per follow-up id: the profile's identities as of its deadline, for the messaging
    services (a hand-off carries its own)."""
    pruned: list[str] = field(default_factory=list)
    """Events whose touchpoints were pruned: the stage drops the records it kept for them."""

    def __bool__(self) -> bool:
        return any(
            (
                self.journeys,
                self.assignments,
                self.pivots,
                self.retracted_pivots,
                self.handoffs,
                self.dropoffs,
                self.followups,
                self.pruned,
            )
        )


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
    left: Left | None = None

    def take(self, event: EventFacts, rules: Rules) -> Pivot | None:
        if self.touchpoints == 0 or event.occurred_at - self.last_at >= rules.session_idle_ms:
            self.sessions += 1
        self.touchpoints += 1
        self.late += event.late
        self.last_at = event.occurred_at
        if event.is_brand:
            return None
        if event.channel not in self.channels:
            self.channels.append(event.channel)
        pivot = pivot_of(self.left, event, self.journey_id, rules)
        self.pivots += pivot is not None
        self.left = Left.of(event)
        return pivot

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
        left = flat(self.left) if self.left else None
        data: dict[str, Any] = flat(self)
        return data | {"channels": list(self.channels), "left": left}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Open:
        left = Left(**data["left"]) if data.get("left") else None
        return cls(**(data | {"channels": list(data["channels"]), "left": left}))


@dataclass
class _Stitch:
    """Journeys cut so far from events taken in ``(occurred_at, event_id)`` order."""

    profile: str
    rules: Rules
    closed: list[JourneySummary] = field(default_factory=list)
    current: _Open | None = None
    placed: dict[str, str] = field(default_factory=dict)
    pivots: dict[str, Pivot] = field(default_factory=dict)

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
        pivot = current.take(event, self.rules)
        if pivot is not None:
            self.pivots[event.event_id] = pivot
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
    pivots: dict[str, Pivot] = field(default_factory=dict)
    """Published pivots by landing event."""
    handed_off: dict[str, str] = field(default_factory=dict)
    """Landing event → fingerprint of the hand-off last sent for it (``RETRACTED``: withdrawn)."""
    fired: dict[str, Fired] = field(default_factory=dict)
    """Drop-offs that fired, by cart or case key: final, one per key."""
    horizon: int | None = None
    """Detections have seen every on-time event up to here; anything at or before is late."""
    due: int | None = None
    """The horizon at which a drop-off could next fire."""
    identities: dict[str, dict[str, int]] = field(default_factory=dict)
    """Identity kind → value → event time from which it belongs to this profile: its first
    touchpoint here, or the merge that brought it. Outputs show the profile as of a moment, so
    what they carry does not depend on how far processing has run ahead."""
    archived: dict[str, JourneySummary] = field(default_factory=dict)
    """Pruned journeys' last summaries (the newest ``ARCHIVED_JOURNEYS_KEPT``)."""
    kept: dict[str, EventFacts] = field(default_factory=dict)
    """What pruned touchpoints still tell follow-ups: the latest consent per channel
    (``consent:<channel>``) and the latest time zone (``timezone``), as stand-ins."""
    held: dict[str, int] = field(default_factory=dict)
    """Cart or case key → deadline of a pruned drop-off, while a touchpoint left still arms
    that key (within ``Rules.key_memory_ms`` of it, it must not fire again)."""
    absorbed: dict[str, int] = field(default_factory=dict)
    """Profile merged into this one → the version of the outputs with which this profile placed
    its events (they are placed again only ever with higher versions)."""
    settling: int | None = None
    """The horizon when the last late touchpoint arrived. Nothing is pruned until the horizon
    is a retention past it: a replay of old history into a running stack (every touchpoint
    late) keeps its journeys whole instead of pruning each touchpoint as it comes."""

    def expires_at(self, rules: Rules) -> int | None:
        """The watermark at which the open journey expires (None: nothing to expire)."""
        if self.tail is None:
            return None
        published = self.published.get(self.tail.journey_id)
        if published is not None and published.status != "open":
            return None
        expires: int = self.tail.last_at + rules.journey_idle_ms
        return expires

    def to_json(self) -> dict[str, Any]:
        return {
            "last": list(self.last) if self.last else None,
            "tail": self.tail.to_json() if self.tail else None,
            "profile_id": self.profile_id,
            "events": [e.to_json() for e in self.events.values()],
            "published": [j.to_json() for j in self.published.values()],
            "placed": self.placed,
            "version": self.version,
            "merged_into": self.merged_into,
            "pivots": [p.to_json() for p in self.pivots.values()],
            "handed_off": self.handed_off,
            "fired": [f.to_json() for f in self.fired.values()],
            "horizon": self.horizon,
            "due": self.due,
            "identities": self.identities,
            "archived": [j.to_json() for j in self.archived.values()],
            "kept": {name: e.to_json() for name, e in self.kept.items()},
            "held": self.held,
            "settling": self.settling,
            "absorbed": self.absorbed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileState:
        events = [EventFacts.from_json(e) for e in data["events"]]
        published = [JourneySummary.from_json(j) for j in data["published"]]
        pivots = [Pivot(**p) for p in data.get("pivots", ())]
        fired = [Fired.from_json(f) for f in data.get("fired", ())]
        archived = [JourneySummary.from_json(j) for j in data.get("archived", ())]
        return cls(
            profile_id=data["profile_id"],
            events={e.event_id: e for e in events},
            published={j.journey_id: j for j in published},
            placed=dict(data["placed"]),
            version=data["version"],
            merged_into=data["merged_into"],
            last=(int(data["last"][0]), str(data["last"][1])) if data.get("last") else None,
            tail=_Open.from_json(data["tail"]) if data.get("tail") else None,
            pivots={p.event_id: p for p in pivots},
            handed_off=_handed_off(data.get("handed_off")),
            fired={f.key: f for f in fired},
            horizon=data.get("horizon"),
            due=data.get("due"),
            identities={k: _since(v) for k, v in data.get("identities", {}).items()},
            archived={j.journey_id: j for j in archived},
            kept={name: EventFacts.from_json(e) for name, e in data.get("kept", {}).items()},
            held=dict(data.get("held", {})),
            settling=data.get("settling"),
            absorbed=dict(data.get("absorbed", {})),
        )

    def merged_away(self, survivor: str) -> ProfileState:
        """What this profile keeps once its state has gone to ``survivor``: where it went (an
        event still addressed to it is forwarded there) and its version."""
        return ProfileState(self.profile_id, merged_into=survivor, version=self.version)

    def last_published(self) -> int:
        """The version of the newest journey this profile published (0: none)."""
        return max((summary.version for summary in self.published.values()), default=0)

    def learn_identities(self, identities: dict[str, str], at: int) -> None:
        """``identities`` belong to the profile from event time ``at`` on. Past the cap, the
        values known earliest are kept, whatever order they came in."""
        for kind, value in identities.items():
            known = self.identities.setdefault(kind, {})
            since = known.get(value)
            if since is None or at < since:
                known[value] = at
                if len(known) > IDENTITY_VALUES_KEPT:
                    del known[max(known, key=lambda v: (known[v], v))]

    def identities_at(self, moment: int | None) -> dict[str, list[str]]:
        """The identities the profile had at event time ``moment`` (None: all it has now),
        earliest first."""
        shown = {}
        for kind in sorted(self.identities):
            known = self.identities[kind]
            values = sorted(
                (since, value)
                for value, since in known.items()
                if moment is None or since <= moment
            )
            if values:
                shown[kind] = [value for _, value in values]
        return shown

    def sorted_events(self) -> list[EventFacts]:
        return sorted(self.events.values(), key=lambda e: e.order)


class JourneyCore:
    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()

    def wake(self, state: ProfileState) -> dict[str, int | None]:
        """What the stage saves next to the state so that time passing only reloads the profiles
        it affects: the watermark that expires a journey, the horizons that fire a drop-off and
        that prune a journey."""
        oldest = min((j.last_at for j in state.published.values()), default=None)
        settled = (
            oldest if state.settling is None or oldest is None else max(oldest, state.settling)
        )
        prune = None if settled is None else settled + self.rules.retention_ms + 1
        return {"expires": state.expires_at(self.rules), "due": state.due, "prune": prune}

    def wakes_at(self, wake: dict[str, Any]) -> int | None:
        """The first watermark (before a run's end) at which :meth:`is_due` holds."""
        horizons = [wake.get("due"), wake.get("prune")]
        fires = [self.rules.watermark_at(h) for h in horizons if h is not None]
        return min((t for t in (wake.get("expires"), *fires) if t is not None), default=None)

    def is_due(self, wake: dict[str, Any], watermark: int, *, finished: bool) -> bool:
        expires = wake.get("expires")
        horizon = self.rules.horizon(watermark, finished=finished)
        horizons = (h for h in (wake.get("due"), wake.get("prune")) if h is not None)
        return (expires is not None and watermark >= expires) or any(horizon >= h for h in horizons)

    def is_late(self, occurred_at: int, watermark: int | None) -> bool:
        return watermark is not None and occurred_at < watermark - self.rules.allowed_lateness_ms

    def add(
        self,
        state: ProfileState,
        event: EventFacts,
        watermark: int | None,
        *,
        finished: bool = False,
    ) -> Outputs:
        """One touchpoint for this profile; a duplicate ``event_id`` changes nothing."""
        if event.event_id in state.events:
            return Outputs()
        late = self.is_late(event.occurred_at, watermark) or (
            state.horizon is not None and event.occurred_at <= state.horizon
        )
        if late != event.late:
            event = replace(event, late=late)
        state.events[event.event_id] = event
        # After every other event (the usual case) it cannot change what an earlier hand-off
        # showed; otherwise the hand-offs of the landings after it are looked at again.
        if state.last is not None and event.order > state.last:
            out, pivots = self._append(state, event, watermark)
            since = None
        else:
            out, pivots = self._restitch(state, watermark)
            since = event.occurred_at
        self._detect(state, out, pivots, watermark, finished, appended=event, since=since)
        return out

    def _append(
        self, state: ProfileState, event: EventFacts, watermark: int | None
    ) -> tuple[Outputs, dict[str, Pivot] | None]:
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
        # Only the new touchpoint can add a pivot; earlier ones are untouched.
        return out, {**state.pivots, **cut.pivots}

    def absorb(
        self,
        state: ProfileState,
        loser: ProfileState,
        watermark: int | None,
        *,
        cause: int = 0,
        finished: bool = False,
    ) -> Outputs:
        """``loser``'s events and journeys now belong to ``state``: stitch them as one history.
        Absorbing the same loser again (a repeated transfer) changes nothing. ``cause``: event
        time of the link that revealed the merge, from which the loser's identities belong to
        this profile (0: unknown).

        History a merge finds settled is final: journeys of either side that ended more than the
        retention before ``cause`` are pruned, not re-cut (the loser's keep its profile id).
        Pruning past the horizon only ever removes journeys this would freeze, so the result
        does not depend on how much either side had pruned when the merge came."""
        frozen = Outputs()
        if cause > 0:
            self._prune(state, frozen, cause - self.rules.retention_ms)
            self._prune(loser, frozen, cause - self.rules.retention_ms)
        arrived = [eid for eid in loser.events if eid not in state.events]
        for event_id in arrived:
            state.events[event_id] = loser.events[event_id]
        for jid, summary in loser.published.items():
            state.published.setdefault(jid, summary)
        # The loser's pivots and drop-offs were published under its profile id: each is published
        # again under this one (a blank journey id makes every pivot differ from its re-stitch;
        # one that no longer exists is retracted).
        for event_id, pivot in loser.pivots.items():
            state.pivots.setdefault(event_id, replace(pivot, journey_id=""))
        moved = [
            fired
            for key, fired in loser.fired.items()
            if key not in state.fired and fired.anchor.event_id in loser.events
        ]
        state.fired.update({fired.key: fired for fired in moved})
        for event_id, sent in loser.handed_off.items():
            state.handed_off.setdefault(event_id, sent)
        for kind, known in loser.identities.items():
            for value, since in known.items():
                state.learn_identities({kind: value}, max(since, cause))
        for name, stand_in in loser.kept.items():
            _keep(state, name, stand_in)
        for key, at in loser.held.items():
            state.held[key] = max(at, state.held.get(key, at))
        state.horizon = _max(state.horizon, loser.horizon)
        state.version = max(state.version, loser.version)
        # Every absorbed event changes profile, so each is re-placed even if its journey is unchanged.
        for event_id in arrived:
            state.placed.pop(event_id, None)
        out, pivots = self._restitch(state, watermark)
        out.journeys += frozen.journeys
        out.pruned += frozen.pruned
        out.dropoffs += moved
        out.followups += moved
        # Every landing is looked at again: while a contact is live, the agent gets what the
        # merge revealed (a customer who identifies during a call brings the chat they left).
        self._detect(state, out, pivots, watermark, finished, rescan=True, since=EVERY_LANDING)
        return out

    def republish(self, state: ProfileState) -> Outputs:
        """Everything this profile has published, again, with a new version: a worker that
        takes a partition over cannot know which of the last owner's outputs reached Kafka
        (its state may have been saved while some of its outputs were lost with it)."""
        state.version += 1
        out = Outputs(version=state.version, profile_id=state.profile_id)
        out.journeys = [_versioned(j, state.version) for j in state.published.values()]
        out.assignments = [
            _assignment(state.events[eid], state.profile_id, place, state.version)
            for eid, place in state.placed.items()
            if eid in state.events
        ]
        out.pivots = list(state.pivots.values())
        out.handoffs = self._shown(state)
        out.dropoffs = out.followups = list(state.fired.values())
        out.identities = _identities(state, out.followups)
        for summary in out.journeys:
            state.published[summary.journey_id] = summary
        return out

    def advance(
        self, state: ProfileState, watermark: int | None, *, finished: bool = False
    ) -> Outputs:
        """Time passed: an open journey may have expired, a drop-off may be due."""
        out, pivots = self._restitch(state, watermark)
        self._detect(state, out, pivots, watermark, finished)
        return out

    def _restitch(
        self, state: ProfileState, watermark: int | None
    ) -> tuple[Outputs, dict[str, Pivot] | None]:
        cut = _cut(state.profile_id, list(state.events.values()), self.rules)
        journeys, placed = cut.journeys(watermark), cut.placed
        state.tail = cut.current
        state.last = max((e.order for e in state.events.values()), default=None)
        current = {j.journey_id: j for j in journeys}
        changed = [j for j in journeys if state.published.get(j.journey_id) != j]
        gone = [j for jid, j in state.published.items() if jid not in current]
        moved = [eid for eid, jid in placed.items() if state.placed.get(eid) != jid]
        if not (changed or moved or any(j.status != "superseded" for j in gone)):
            return Outputs(), cut.pivots
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
        return out, cut.pivots

    def _detect(
        self,
        state: ProfileState,
        out: Outputs,
        pivots: dict[str, Pivot] | None,
        watermark: int | None,
        finished: bool,
        *,
        appended: EventFacts | None = None,
        rescan: bool = False,
        since: int | None = None,
    ) -> None:
        """Pivots, hand-offs, drop-offs and follow-ups after the journeys were brought up to date.
        ``since``: the history before the landings at or after this event time may have changed."""
        if pivots is not None:
            self._pivots(state, out, pivots, since=since)
        if watermark is not None:
            horizon = self.rules.horizon(watermark, finished=finished)
            state.horizon = _max(state.horizon, horizon)
        if appended is not None and not state.events[appended.event_id].late:
            state.due = _min(state.due, arming_deadline(appended, self.rules))
        elif appended is not None:
            state.settling = _max(state.settling, state.horizon)
        due = state.due is not None and state.horizon is not None and state.horizon >= state.due
        if due or rescan:
            on_time = [e for e in state.sorted_events() if not e.late]
            if rescan:
                self._reconcile(state, out, on_time)
                self._replan(state, out, on_time)
            self._dropoffs(state, out, on_time)
        if appended is not None and appended.action == PURCHASE:
            self._settle(state, out, [appended])
        if rescan:
            self._settle(state, out, [e for e in state.events.values() if e.action == PURCHASE])
        if out.assignments:
            self._rejourney(state, out)
        cut = None if state.horizon is None else state.horizon - self.rules.retention_ms
        if cut is not None and (state.settling is None or state.settling < cut):
            self._prune(state, out, cut)
        # A drop-off can be touched twice in one call (moved, then re-journeyed): publish its
        # final state once.
        out.dropoffs = _latest(state, out.dropoffs)
        out.followups = _latest(state, out.followups)
        if out and not (out.journeys or out.assignments):
            state.version += 1
        out.version, out.profile_id = state.version, state.profile_id
        out.identities = _identities(state, out.followups)

    def _pivots(
        self, state: ProfileState, out: Outputs, pivots: dict[str, Pivot], *, since: int | None
    ) -> None:
        out.pivots = [p for eid, p in pivots.items() if state.pivots.get(eid) != p]
        out.retracted_pivots = [p for eid, p in state.pivots.items() if eid not in pivots]
        state.pivots = pivots
        self._handoffs(state, out, since)

    def _handoffs(self, state: ProfileState, out: Outputs, since: int | None) -> None:
        """A hand-off shows the history up to its landing touchpoint. It is sent when its pivot
        appears and again, same ``handoff_id``, when that history changes while the landing is
        live: a touchpoint before the landing that arrives after it (within the allowed
        lateness), or a merge. For a profile's own touchpoints, the last one sent once the
        horizon passes the landing is what the full history shows, whatever the arrival order.
        One whose pivot disappears that way is sent once more, retracted. ``since``: the
        landings at or after this event time are looked at again (None: only new pivots)."""
        again = (
            [] if since is None else [p for p in state.pivots.values() if p.occurred_at >= since]
        )
        fresh = [p for p in out.pivots if not _on_screen(state, p.event_id)]
        assisted = {
            p.event_id: p
            for p in (*fresh, *again)
            if p.to_channel in self.rules.assisted_channels
            and self._live(state, state.events[p.event_id])
        }
        gone = [
            p
            for p in out.retracted_pivots
            if since is not None and p.occurred_at >= since and _on_screen(state, p.event_id)
        ]
        if not (assisted or gone):
            return
        history = state.sorted_events()
        for pivot in gone:
            state.handed_off[pivot.event_id] = RETRACTED
            out.handoffs.append(replace(self._handoff(state, pivot, history), retracted=True))
        for pivot in sorted(assisted.values(), key=lambda p: state.events[p.event_id].order):
            handoff = self._handoff(state, pivot, history)
            fingerprint = handoff.fingerprint
            if state.handed_off.get(pivot.event_id) != fingerprint:
                out.handoffs.append(handoff)
                state.handed_off[pivot.event_id] = fingerprint

    def _shown(self, state: ProfileState) -> list[Handoff]:
        """The hand-offs last sent, rebuilt: those this profile's own state still gives (one kept
        as the agent saw it before a merge changed its history cannot be rebuilt, and stays),
        and the withdrawn ones, retracted again (their pivot is gone: a stand-in names the
        landing)."""
        history = state.sorted_events()
        shown = []
        for event_id, sent in state.handed_off.items():
            landing = state.events.get(event_id)
            pivot = state.pivots.get(event_id)
            if sent == RETRACTED and landing is not None:
                journey = _journey_of(state, event_id)
                gone = Pivot(event_id, journey, landing.occurred_at, "", landing.channel, 0)
                shown.append(replace(self._handoff(state, gone, history), retracted=True))
            elif pivot is not None:
                handoff = self._handoff(state, pivot, history)
                if handoff.fingerprint == sent:
                    shown.append(handoff)
        return shown

    def _handoff(self, state: ProfileState, pivot: Pivot, history: list[EventFacts]) -> Handoff:
        landing = state.events[pivot.event_id]
        # No further back than the retention: what pruning may already have removed.
        reach = landing.occurred_at - self.rules.retention_ms
        before = [e for e in history if e.order <= landing.order and e.occurred_at > reach]
        journey = [e for e in before if _journey_of(state, e.event_id) == pivot.journey_id]
        identities = state.identities_at(None)
        return handoff_of(pivot, state.profile_id, identities, before, journey, self.rules)

    @staticmethod
    def _live(state: ProfileState, event: EventFacts) -> bool:
        """Still happening: an agent can use a hand-off for it (not late, not behind the horizon
        that an earlier call on this profile had reached)."""
        return not event.late and (state.horizon is None or event.occurred_at > state.horizon)

    def _prune(self, state: ProfileState, out: Outputs, cut: int) -> None:
        """Drop the journeys that ended before ``cut`` with their touchpoints, placements,
        pivots, hand-offs and drop-offs; keep their summaries (archived) and what follow-ups
        still read of them (consent, time zone), and the keys of their drop-offs that a
        touchpoint left still arms (``held``)."""
        gone = {jid for jid, summary in state.published.items() if summary.last_at < cut}
        if not gone:
            return
        pruned = [e for e in state.events.values() if _journey_of(state, e.event_id) in gone]
        for event in sorted(pruned, key=lambda e: e.order):
            _keep_facts(state, event)
            for kept in (state.events, state.placed, state.pivots, state.handed_off):
                kept.pop(event.event_id, None)
        keys = {armed.key for e in state.events.values() if (armed := arm(e, self.rules))}
        for key, fired in list(state.fired.items()):
            if fired.anchor.event_id not in state.events:
                del state.fired[key]
                if not fired.retracted:
                    state.held[key] = max(fired.deadline, state.held.get(key, fired.deadline))
        state.held = {key: at for key, at in state.held.items() if key in keys}
        if state.tail is not None and state.tail.journey_id in gone:
            state.tail = None
        self._archive(state, out, [state.published.pop(jid) for jid in sorted(gone)])
        out.pruned += [e.event_id for e in pruned]

    def _archive(self, state: ProfileState, out: Outputs, summaries: list[JourneySummary]) -> None:
        """A pruned journey still open (no watermark told it yet) can no longer grow: expired."""
        if any(summary.status == "open" for summary in summaries):
            state.version += 1
        for summary in summaries:
            if summary.status == "superseded":
                continue
            if summary.status == "open":
                summary = _versioned(summary, state.version, status="expired")
                out.journeys.append(summary)
            state.archived[summary.journey_id] = summary
        newest = sorted(state.archived.values(), key=lambda j: (j.last_at, j.journey_id))
        state.archived = {j.journey_id: j for j in newest[-ARCHIVED_JOURNEYS_KEPT:]}

    def _dropoffs(self, state: ProfileState, out: Outputs, on_time: list[EventFacts]) -> None:
        """``on_time``: the profile's events in order, late ones left out."""
        fired_at = state.held | {key: fired.deadline for key, fired in _standing(state).items()}
        fired, state.due = scan_dropoffs(on_time, state.horizon, self.rules, fired_at)
        history = _planning(state, on_time)
        for dropoff in fired:
            journey = _journey_of(state, dropoff.anchor.event_id)
            planned = plan_followup(
                dropoff, journey, history, _standing(state).values(), self.rules
            )
            state.fired[dropoff.key] = planned
            out.dropoffs.append(planned)
            out.followups.append(planned)

    def _reconcile(self, state: ProfileState, out: Outputs, on_time: list[EventFacts]) -> None:
        """Convergence after a merge: a drop-off fired on either side that the merged history
        would not fire — its purchase or resolved contact came in time, or a later change of the
        same cart moved the deadline — is retracted and its follow-up cancelled. The progress
        tracking makes this rare (a merge whose cause is beyond the horizon, or late); it makes
        the tables end as if the profiles had always been one, whatever the processing speed."""
        should, _ = scan_dropoffs(on_time, state.horizon, self.rules)
        truth = {(d.key, d.anchor.event_id) for d in should}
        for key, fired in list(state.fired.items()):
            if fired.retracted or (key, fired.anchor.event_id) in truth:
                continue
            state.fired[key] = fired.retract()
            out.dropoffs.append(state.fired[key])
            out.followups.append(state.fired[key])

    def _replan(self, state: ProfileState, out: Outputs, on_time: list[EventFacts]) -> None:
        """A merge can reveal consent, a time zone or an earlier follow-up that the drop-offs
        fired on either side did not know: their follow-ups are planned again from the merged
        history (same ids; a drop-off that fired stays fired), so the result does not depend on
        whether the merge came before or after the deadlines."""
        earlier: list[Fired] = []
        history = _planning(state, on_time)
        for fired in sorted(_standing(state).values(), key=lambda f: (f.deadline, f.key)):
            dropoff = Dropoff(fired.kind, fired.key, fired.anchor, fired.deadline)
            journey = _journey_of(state, fired.anchor.event_id) or fired.journey_id
            planned = plan_followup(dropoff, journey, history, earlier, self.rules)
            earlier.append(planned)
            if planned == fired:
                continue
            state.fired[fired.key] = planned
            out.dropoffs.append(planned)
            if _message(planned) != _message(fired):
                out.followups.append(planned)

    def _settle(self, state: ProfileState, out: Outputs, purchases: list[EventFacts]) -> None:
        for key, fired in list(state.fired.items()):
            if fired.status != SCHEDULED:
                continue
            settled = settle(fired, purchases, self.rules)
            if settled == fired:
                continue
            state.fired[key] = settled
            if settled.status != fired.status:
                out.followups.append(settled)
            if settled.recovery_event_id != fired.recovery_event_id:
                out.dropoffs.append(settled)

    def _rejourney(self, state: ProfileState, out: Outputs) -> None:
        """A re-stitch can move a drop-off's anchor to another journey id."""
        for key, fired in list(state.fired.items()):
            journey = _journey_of(state, fired.anchor.event_id)
            if journey and journey != fired.journey_id:
                state.fired[key] = replace(fired, journey_id=journey)
                out.dropoffs.append(state.fired[key])


def _message(fired: Fired) -> tuple[object, ...]:
    """What a messaging service acts on."""
    return fired.status, fired.reason, fired.channel, fired.send_at, fired.expires_at


def _latest(state: ProfileState, touched: list[Fired]) -> list[Fired]:
    """Each touched follow-up once, in its final state (a retracted one that a new anchor of the
    same cart replaced is still published, as retracted)."""
    latest: dict[str, Fired] = {}
    for fired in touched:
        current = state.fired.get(fired.key)
        same = current is not None and current.followup_id == fired.followup_id
        latest[fired.followup_id] = current if same and current is not None else fired
    return list(latest.values())


def _standing(state: ProfileState) -> dict[str, Fired]:
    """Fired drop-offs that stand (not retracted), by key."""
    return {key: fired for key, fired in state.fired.items() if not fired.retracted}


def _journey_of(state: ProfileState, event_id: str) -> str:
    return state.placed.get(event_id, "").partition("/")[0]


def _keep_facts(state: ProfileState, event: EventFacts) -> None:
    """What a pruned touchpoint still tells follow-ups, as a stand-in (facts of no action);
    a late one told them nothing."""
    if event.late:
        return
    if event.consent_channel:
        stand_in = EventFacts(
            event.event_id,
            event.occurred_at,
            event.channel,
            KEPT,
            consent_channel=event.consent_channel,
            consent_granted=event.consent_granted,
        )
        _keep(state, "consent:" + event.consent_channel, stand_in)
    if event.timezone and zone(event.timezone) is not None:
        stand_in = EventFacts(
            event.event_id, event.occurred_at, event.channel, KEPT, timezone=event.timezone
        )
        _keep(state, "timezone", stand_in)


def _keep(state: ProfileState, name: str, stand_in: EventFacts) -> None:
    current = state.kept.get(name)
    if current is None or current.order < stand_in.order:
        state.kept[name] = stand_in


def _planning(state: ProfileState, on_time: list[EventFacts]) -> list[EventFacts]:
    """The history follow-ups are planned from: the on-time touchpoints left and the pruned
    ones' stand-ins, in order."""
    if not state.kept:
        return on_time
    return sorted([*state.kept.values(), *on_time], key=lambda e: e.order)


def _on_screen(state: ProfileState, event_id: str) -> bool:
    """Whether a hand-off for this landing was sent and not withdrawn."""
    return state.handed_off.get(event_id, RETRACTED) != RETRACTED


def _identities(state: ProfileState, followups: list[Fired]) -> dict[str, dict[str, list[str]]]:
    return {f.followup_id: state.identities_at(f.deadline) for f in followups}


def _since(saved: list[str] | dict[str, int]) -> dict[str, int]:
    """Profiles saved before identities had a time kept only the values: known from the start."""
    return dict.fromkeys(saved, 0) if isinstance(saved, list) else dict(saved)


def _handed_off(saved: list[str] | dict[str, str] | None) -> dict[str, str]:
    """Profiles saved before hand-offs had fingerprints kept only the landing events."""
    if isinstance(saved, list):
        return dict.fromkeys(saved, "")
    return dict(saved or {})


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _versioned(
    summary: JourneySummary, version: int, *, status: str | None = None, profile: str | None = None
) -> JourneySummary:
    return replace(
        summary,
        version=version,
        status=status or summary.status,
        profile_id=profile or summary.profile_id,
    )
