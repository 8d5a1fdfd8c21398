"""The timer index wakes each profile once, when its time has come, whatever was set before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from parcours.streams.rules import Rules
from parcours.streams.timers import Timers


def test_a_profile_wakes_once_at_its_latest_time() -> None:
    timers = Timers()
    timers.set("p1", 100)
    timers.set("p2", 50)
    timers.set("p1", 300)
    assert timers.due(99) == ["p2"]
    assert timers.due(299) == []
    assert timers.due(300) == ["p1"]
    assert timers.due(10_000) == [] and len(timers) == 0


def test_a_profile_that_time_no_longer_changes_never_wakes() -> None:
    timers = Timers()
    timers.set("p1", 100)
    timers.set("p1", None)
    assert timers.due(1_000) == [] and timers.waiting() == []


@given(
    st.lists(st.tuples(st.sampled_from("abcde"), st.none() | st.integers(0, 50))),
    st.integers(0, 60),
)
def test_due_is_exactly_the_profiles_whose_last_time_has_come(
    sets: list[tuple[str, int | None]], watermark: int
) -> None:
    timers, last = Timers(), {}
    for profile, at in sets:
        timers.set(profile, at)
        last[profile] = at
    expected = sorted(p for p, at in last.items() if at is not None and at <= watermark)
    assert sorted(timers.due(watermark)) == expected
    assert sorted(timers.waiting()) == sorted(
        p for p, at in last.items() if at is not None and at > watermark
    )


@given(st.integers(0, 10**13), st.integers(0, 10**7))
def test_watermark_at_undoes_the_horizon(horizon: int, lateness: int) -> None:
    rules = Rules(allowed_lateness_ms=lateness)
    assert rules.horizon(rules.watermark_at(horizon), finished=False) == horizon
