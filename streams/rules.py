"""The behaviour's numbers (README: Detections, Configuration), as the pure cores take them; settings fill them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from functools import cached_property

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Rules:
    session_idle_ms: int = 30 * MINUTE_MS
    journey_idle_ms: int = 7 * DAY_MS
    allowed_lateness_ms: int = 10 * MINUTE_MS
    pivot_failure_window_ms: int = 30 * MINUTE_MS
    """A failure this close before a channel switch makes the pivot failure-driven."""
    cart_abandon_ms: int = 60 * MINUTE_MS
    checkout_abandon_ms: int = 30 * MINUTE_MS
    contact_abandon_ms: int = DAY_MS
    assisted_channels: tuple[str, ...] = ("phone", "live_chat", "store", "video")
    handoff_history: int = 5
    """Touchpoints of the journey so far that a hand-off shows the agent."""
    followup_channels: tuple[str, ...] = ("email", "sms", "push")
    """Channels a follow-up may use; on equal consent times the earlier one wins."""
    followup_delay_ms: int = 0
    followup_ttl_ms: int = DAY_MS
    frequency_cap_ms: int = DAY_MS
    quiet_start: time | None = time(21, 0)
    quiet_end: time | None = time(8, 0)
    default_timezone: str = "UTC"
    recovery_window_ms: int = 7 * DAY_MS

    @cached_property  # read at every touchpoint
    def retention_ms(self) -> int:
        """How long after its last touchpoint a journey can still matter to a rule: a touchpoint
        joining it (journey idle), arriving late (allowed lateness), its drop-offs firing (the
        longest abandonment wait), their follow-ups being sent (delay, quiet hours: at most a
        day), and a purchase recovering them or a later follow-up being capped by them. Once the
        horizon is this far past a journey, nothing can change it or read it: it is pruned."""
        waits = (self.cart_abandon_ms, self.checkout_abandon_ms, self.contact_abandon_ms)
        reach = (self.recovery_window_ms, self.frequency_cap_ms, self.followup_ttl_ms)
        return (
            self.journey_idle_ms
            + self.allowed_lateness_ms
            + max(waits)
            + self.followup_delay_ms
            + DAY_MS
            + max(reach)
        )

    @cached_property
    def key_memory_ms(self) -> int:
        """A cart or case that fired does not fire again for a deadline closer than this to the
        first one's (so a drop-off kept only that long is never needed to hold one back)."""
        waits = (self.cart_abandon_ms, self.checkout_abandon_ms, self.contact_abandon_ms)
        return self.retention_ms - max(waits)

    def horizon(self, watermark: int, *, finished: bool) -> int:
        """Event time up to which every on-time event has arrived (inclusive).

        An event is late when it is more than the allowed lateness behind the watermark, so one
        at ``watermark - lateness`` may still come; at the end of a run nothing more comes.
        """
        return watermark if finished else watermark - self.allowed_lateness_ms - 1

    def watermark_at(self, horizon: int) -> int:
        """The watermark (before a run's end) whose horizon is ``horizon``: :meth:`horizon` undone."""
        return horizon + self.allowed_lateness_ms + 1
