"""Arrival orders for the property tests: events delayed by at most the allowed lateness."""

from __future__ import annotations

from hypothesis import strategies as st
from parcours.streams.facts import EventFacts


def late_within(
    data: st.DataObject, events: list[EventFacts], lateness_ms: int
) -> list[EventFacts]:
    """``events`` (in event-time order) as they arrive when each is delayed by 0..lateness."""
    delays = data.draw(
        st.lists(st.integers(0, lateness_ms), min_size=len(events), max_size=len(events))
    )
    arrivals = [e.occurred_at + d for e, d in zip(events, delays, strict=True)]
    paired = sorted(zip(arrivals, events, strict=True), key=lambda p: (p[0], p[1].event_id))
    return [event for _, event in paired]
