"""Topic names (before the ``PARCOURS_TOPIC_PREFIX``)."""

from __future__ import annotations

TOUCHPOINTS = "touchpoints"
"""Channel services → ingest, keyed by the event's strongest identity."""
IDENTITY = "identity"
"""Internal to the identity stage, keyed by identity: events at their home node, links, rounds."""
RESOLVED = "touchpoints.resolved"
"""Identity stage → journey stage, keyed by profile id: events, merges, transfers, rounds."""
STITCHED = "touchpoints.stitched"
"""Journey stage → sink: every touchpoint with its profile and journey, re-sent when they change."""
DEAD_LETTERS = "deadletters"
JOURNEYS = "journeys"
IDENTITY_WARNINGS = "identity.warnings"
MERGES = "profiles.merges"
PIVOTS = "pivots"
"""Journey stage → sink: every channel switch, re-sent (or retracted) when a re-stitch moves it."""
DROPOFFS = "dropoffs"
"""Journey stage → sink: drop-offs when they fire, again when a purchase recovers them."""
FOLLOWUP_KINDS = ("abandoned_cart", "abandoned_checkout", "abandoned_contact")


def followups(kind: str) -> str:
    return f"followups.{kind}"


FOLLOWUPS = tuple(followups(kind) for kind in FOLLOWUP_KINDS)
"""Journey stage → messaging services (and the sink): one topic per drop-off kind."""
HANDOFFS = "handoffs"
"""Journey stage → agents' desktops (and the sink): context when a customer reaches an agent."""

SINK_INPUTS: tuple[str, ...] = (
    STITCHED,
    DEAD_LETTERS,
    JOURNEYS,
    IDENTITY_WARNINGS,
    MERGES,
    PIVOTS,
    DROPOFFS,
    *FOLLOWUPS,
    HANDOFFS,
)
"""What the ClickHouse sink consumes; end-of-run markers reach every partition of these."""
ALL: tuple[str, ...] = (TOUCHPOINTS, IDENTITY, RESOLVED, *SINK_INPUTS)
