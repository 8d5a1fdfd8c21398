"""Detections, pure: pivots, drop-offs and the follow-ups they trigger (README: Detections).

Everything here is a function of a profile's events (sorted by ``(occurred_at, event_id)``) and of
the *horizon*: the event time up to which every on-time event has arrived. A drop-off fires only
once its deadline is within the horizon, so a purchase that arrives out of order — but within the
allowed lateness — still prevents it, and the result does not depend on arrival order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parcours.streams.facts import (
    CART_CHANGES,
    CHECKOUT,
    CONTACT_ENDED,
    PURCHASE,
    EventFacts,
    flat,
)
from parcours.streams.rules import Rules

ABANDONED_CART = "abandoned_cart"
ABANDONED_CHECKOUT = "abandoned_checkout"
ABANDONED_CONTACT = "abandoned_contact"
KINDS = (ABANDONED_CART, ABANDONED_CHECKOUT, ABANDONED_CONTACT)


def _digest(prefix: str, text: str) -> str:
    return prefix + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


# --- pivots -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pivot:
    """The customer switched channel: ``event_id`` is the touchpoint that landed on ``to_channel``."""

    event_id: str
    journey_id: str
    occurred_at: int
    from_channel: str
    to_channel: str
    gap_ms: int
    failure_event_id: str | None = None
    failure_action: str | None = None

    @property
    def failure_driven(self) -> bool:
        return self.failure_event_id is not None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = flat(self)  # (mypy sees parcours.* imports as Any)
        return data


@dataclass(frozen=True)
class Left:
    """The last customer touchpoint: the channel a switch leaves, and whether it failed."""

    event_id: str
    occurred_at: int
    channel: str
    action: str
    failure: bool

    @classmethod
    def of(cls, event: EventFacts) -> Left:
        return cls(event.event_id, event.occurred_at, event.channel, event.action, event.is_failure)


def pivot_of(left: Left | None, event: EventFacts, journey_id: str, rules: Rules) -> Pivot | None:
    if left is None or event.is_brand or left.channel == event.channel:
        return None
    gap = event.occurred_at - left.occurred_at
    failed = left.failure and gap <= rules.pivot_failure_window_ms
    return Pivot(
        event_id=event.event_id,
        journey_id=journey_id,
        occurred_at=event.occurred_at,
        from_channel=left.channel,
        to_channel=event.channel,
        gap_ms=gap,
        failure_event_id=left.event_id if failed else None,
        failure_action=left.action if failed else None,
    )


# --- drop-offs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dropoff:
    kind: str
    key: str
    """One drop-off per key: ``cart:<cart_id>`` (cart and checkout) or ``case:<case_id>``."""
    anchor: EventFacts
    deadline: int


def _cart_key(event: EventFacts) -> str:
    key: str = event.cart_id or event.event_id
    return "cart:" + key


def _case_key(event: EventFacts) -> str:
    key: str = event.case_id or event.event_id
    return "case:" + key


def arm(event: EventFacts, rules: Rules) -> Dropoff | None:
    """The timer this event (re)starts, if any."""
    if event.action in CART_CHANGES and event.cart_items > 0:
        return Dropoff(
            ABANDONED_CART, _cart_key(event), event, event.occurred_at + rules.cart_abandon_ms
        )
    if event.action == CHECKOUT:
        return Dropoff(
            ABANDONED_CHECKOUT,
            _cart_key(event),
            event,
            event.occurred_at + rules.checkout_abandon_ms,
        )
    if event.action == CONTACT_ENDED and event.is_failure:
        return Dropoff(
            ABANDONED_CONTACT, _case_key(event), event, event.occurred_at + rules.contact_abandon_ms
        )
    return None


def arming_deadline(event: EventFacts, rules: Rules) -> int | None:
    armed = arm(event, rules)
    return armed.deadline if armed else None


@dataclass
class _Timers:
    rules: Rules
    done: dict[str, int]
    """Key → deadline of the latest drop-off fired for it."""
    pending: dict[str, Dropoff] = field(default_factory=dict)
    fired: list[Dropoff] = field(default_factory=list)

    def fire(self, until: int, *, inclusive: bool) -> None:
        due = [
            d
            for d in self.pending.values()
            if d.deadline < until or (inclusive and d.deadline == until)
        ]
        for dropoff in sorted(due, key=lambda d: (d.deadline, d.key)):
            del self.pending[dropoff.key]
            self.fired.append(dropoff)
            self.done[dropoff.key] = dropoff.deadline

    def take(self, event: EventFacts) -> None:
        # A purchase exactly at a deadline still prevents the drop-off: fire strictly before.
        self.fire(event.occurred_at, inclusive=False)
        if event.action == PURCHASE:
            for key in [k for k in self.pending if k.startswith("cart:")]:
                del self.pending[key]
        elif event.action == CONTACT_ENDED and event.outcome == "resolved":
            self.pending.pop(_case_key(event), None)
        elif event.action in CART_CHANGES and event.cart_items == 0:
            self.pending.pop(_cart_key(event), None)
        armed = arm(event, self.rules)
        if armed is not None and not self._remembered(armed):
            self.pending[armed.key] = armed

    def _remembered(self, armed: Dropoff) -> bool:
        """Its key fired recently enough that it must not fire again."""
        last = self.done.get(armed.key)
        return last is not None and armed.deadline - last < self.rules.key_memory_ms


def scan_dropoffs(
    events: Iterable[EventFacts],
    horizon: int | None,
    rules: Rules,
    fired: Mapping[str, int] | None = None,
) -> tuple[list[Dropoff], int | None]:
    """Drop-offs whose deadline is within ``horizon``, and when the next one could be due.

    ``events`` are the profile's on-time events in order; ``fired``: key → deadline of the
    drop-offs that already fired (a key fires once per ``Rules.key_memory_ms``).
    """
    timers = _Timers(rules, dict(fired or {}))
    due: list[int] = []
    for event in events:
        if horizon is None or event.occurred_at > horizon:
            armed = arm(event, rules)
            if armed is not None:
                due.append(armed.deadline)
            continue
        timers.take(event)
    if horizon is not None:
        timers.fire(horizon, inclusive=True)
    due += [d.deadline for d in timers.pending.values()]
    return timers.fired, min(due, default=None)


# --- follow-ups -------------------------------------------------------------------------------

SCHEDULED = "scheduled"
SUPPRESSED = "suppressed"
CANCELLED = "cancelled"
RETRACTED = "retracted"
"""A cancelled follow-up's reason when its drop-off was retracted (analysts' views leave both out)."""


@dataclass(frozen=True)
class Fired:
    """A drop-off that fired, with the follow-up it triggered and whether a purchase recovered it."""

    kind: str
    key: str
    anchor: EventFacts
    deadline: int
    journey_id: str
    followup_id: str
    status: str
    reason: str | None
    channel: str | None
    send_at: int | None
    expires_at: int | None
    timezone: str
    recovery_event_id: str | None = None
    recovered_at: int | None = None
    recovered_value: float | None = None
    retracted: bool = False
    """A merge showed it should not have fired; its follow-up is cancelled (``retracted``)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = flat(self)
        return data | {"anchor": self.anchor.to_json()}

    def retract(self) -> Fired:
        return replace(self, retracted=True, status=CANCELLED, reason=RETRACTED)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fired:
        return cls(**(data | {"anchor": EventFacts.from_json(data["anchor"])}))


def followup_id(kind: str, anchor_event_id: str) -> str:
    return _digest("f-", f"{kind}:{anchor_event_id}")


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def hold_for_quiet_hours(at_ms: int, tz: ZoneInfo, rules: Rules) -> int:
    """``at_ms``, or the end of the quiet hours it falls in (wall time in ``tz``, DST-aware)."""
    start, end = rules.quiet_start, rules.quiet_end
    if start is None or end is None:
        return at_ms
    local = datetime.fromtimestamp(at_ms / 1000, tz)
    now = local.time().replace(tzinfo=None)
    if start < end:
        quiet, day = start <= now < end, local.date()
    else:  # the window wraps midnight
        quiet = now >= start or now < end
        day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not quiet:
        return at_ms
    return int(datetime.combine(day, end, tzinfo=tz).timestamp() * 1000)


def consented_channel(events: Sequence[EventFacts], until: int, rules: Rules) -> str | None:
    """The most recently consented follow-up channel as of ``until`` (priority breaks ties)."""
    latest: dict[str, tuple[bool, int]] = {}
    for event in events:
        if event.occurred_at > until:
            break
        if event.consent_channel in rules.followup_channels:
            latest[event.consent_channel] = (event.consent_granted, event.occurred_at)
    granted = [(at, channel) for channel, (ok, at) in latest.items() if ok]
    if not granted:
        return None
    priority = rules.followup_channels.index
    return max(granted, key=lambda g: (g[0], -priority(g[1])))[1]


def timezone_of(events: Sequence[EventFacts], until: int, rules: Rules) -> str:
    name: str = rules.default_timezone
    for event in events:
        if event.occurred_at > until:
            break
        candidate: str = event.timezone
        if candidate and zone(candidate) is not None:
            name = candidate
    return name


def plan_followup(
    dropoff: Dropoff,
    journey_id: str,
    events: Sequence[EventFacts],
    earlier: Iterable[Fired],
    rules: Rules,
) -> Fired:
    """The follow-up for a drop-off that just fired; ``earlier`` are the profile's previous ones."""
    tz_name = timezone_of(events, dropoff.deadline, rules)
    tz = zone(tz_name) or ZoneInfo("UTC")
    send_at = hold_for_quiet_hours(dropoff.deadline + rules.followup_delay_ms, tz, rules)
    channel = consented_channel(events, dropoff.deadline, rules)
    status, reason = SCHEDULED, None
    if channel is None:
        status, reason = SUPPRESSED, "no_consent"
    elif any(
        f.kind == dropoff.kind
        and f.status != SUPPRESSED
        and f.send_at is not None
        and abs(f.send_at - send_at) < rules.frequency_cap_ms
        for f in earlier
    ):
        status, reason = SUPPRESSED, "frequency_cap"
    fired = Fired(
        kind=dropoff.kind,
        key=dropoff.key,
        anchor=dropoff.anchor,
        deadline=dropoff.deadline,
        journey_id=journey_id,
        followup_id=followup_id(dropoff.kind, dropoff.anchor.event_id),
        status=status,
        reason=reason,
        channel=channel,
        send_at=send_at if status != SUPPRESSED else None,
        expires_at=send_at + rules.followup_ttl_ms if status != SUPPRESSED else None,
        timezone=tz_name,
    )
    return settle(fired, [e for e in events if e.action == PURCHASE], rules)


def settle(fired: Fired, purchases: Iterable[EventFacts], rules: Rules) -> Fired:
    """Apply the profile's purchases to a scheduled follow-up: one between the anchor and
    ``send_at`` cancels it (cart and checkout only); otherwise the first on-time one within the
    recovery window after ``send_at`` marks the drop-off recovered."""
    if fired.status != SCHEDULED or fired.send_at is None:
        return fired
    send_at, ordered = fired.send_at, sorted(purchases, key=lambda e: e.order)
    if fired.kind != ABANDONED_CONTACT and any(
        fired.anchor.occurred_at <= p.occurred_at < send_at for p in ordered
    ):
        return replace(fired, status=CANCELLED, reason="purchased")
    recovering = [
        p
        for p in ordered
        if not p.late and send_at <= p.occurred_at <= send_at + rules.recovery_window_ms
    ]
    if not recovering:
        return fired
    first = recovering[0]
    if (
        fired.recovered_at is not None
        and (fired.recovered_at, fired.recovery_event_id or "") <= first.order
    ):
        return fired
    return replace(
        fired,
        recovery_event_id=first.event_id,
        recovered_at=first.occurred_at,
        recovered_value=first.value,
    )


# --- hand-offs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handoff:
    """What the agent on an assisted channel needs so the customer never starts over."""

    pivot: Pivot
    profile_id: str
    identities: dict[str, list[str]]
    """The profile's identities when it is sent (kinds in order, earliest first)."""
    recent: tuple[EventFacts, ...]
    """The journey so far, oldest first, ending with the touchpoint that reached the agent."""
    failure: EventFacts | None
    cart: EventFacts | None
    """The latest cart change or checkout not followed by a purchase."""
    case: EventFacts | None
    """The latest contact with a case or topic, unless that case was resolved."""
    repeat_channels: tuple[str, ...]
    """Other channels on which the same case (or topic) was raised before."""
    retracted: bool = False
    """Its pivot is gone (an earlier touchpoint on the same channel arrived after it)."""

    @property
    def handoff_id(self) -> str:
        return _digest("h-", self.pivot.event_id)

    @property
    def fingerprint(self) -> str:
        """What the agent is shown, in short: a hand-off is sent again only when it changes. An
        event id stands for the touchpoint (its facts never change once it is in a profile)."""
        steps = (*self.recent, self.failure, self.cart, self.case)
        shown = (
            self.pivot,
            [step.event_id if step else None for step in steps],
            self.repeat_channels,
            self.identities,
        )
        return _digest("", repr(shown))


def handoff_of(
    pivot: Pivot,
    profile_id: str,
    identities: dict[str, list[str]],
    history: Sequence[EventFacts],
    journey: Sequence[EventFacts],
    rules: Rules,
) -> Handoff:
    """``history``: the profile's events up to the landing touchpoint, in order; ``journey``:
    those of the pivot's journey."""
    landing = history[-1]
    failure = next((e for e in history if e.event_id == pivot.failure_event_id), None)
    case = _open_case(history)
    return Handoff(
        pivot=pivot,
        profile_id=profile_id,
        identities=identities,
        recent=tuple(journey[-rules.handoff_history :]),
        failure=failure,
        cart=_open_cart(history),
        case=case,
        repeat_channels=_repeat_channels(history, landing, case),
    )


def _open_cart(history: Sequence[EventFacts]) -> EventFacts | None:
    for event in reversed(history):
        if event.action == PURCHASE:
            return None
        if event.cart_id and (event.action == CHECKOUT or event.action in CART_CHANGES):
            return event if event.cart_items > 0 or event.action == CHECKOUT else None
    return None


def _open_case(history: Sequence[EventFacts]) -> EventFacts | None:
    contacts = [e for e in history if e.case_id or e.topic]
    if not contacts:
        return None
    latest = contacts[-1]
    same = [e for e in contacts if _same_case(e, latest)]
    return None if same[-1].outcome == "resolved" else latest


def _same_case(event: EventFacts, case: EventFacts) -> bool:
    same: bool = event.case_id == case.case_id if case.case_id else event.topic == case.topic
    return same and bool(case.case_id or case.topic)


def _repeat_channels(
    history: Sequence[EventFacts], landing: EventFacts, case: EventFacts | None
) -> tuple[str, ...]:
    subject = landing if (landing.case_id or landing.topic) else case
    if subject is None:
        return ()
    channels = {
        e.channel
        for e in history[:-1]
        if e.is_contact and e.channel != landing.channel and _raised_same(e, subject)
    }
    return tuple(sorted(channels))


def _raised_same(event: EventFacts, subject: EventFacts) -> bool:
    if subject.case_id and event.case_id == subject.case_id:
        return True
    return bool(subject.topic) and event.topic == subject.topic
