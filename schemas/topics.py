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
DROPOFFS = "dropoffs"
FOLLOWUPS = "followups"

ALL: tuple[str, ...] = (
    TOUCHPOINTS,
    IDENTITY,
    RESOLVED,
    STITCHED,
    DEAD_LETTERS,
    JOURNEYS,
    IDENTITY_WARNINGS,
    MERGES,
    PIVOTS,
    DROPOFFS,
    FOLLOWUPS,
)
SINK_INPUTS: tuple[str, ...] = (STITCHED, DEAD_LETTERS, JOURNEYS, IDENTITY_WARNINGS, MERGES)
"""What the ClickHouse sink consumes; end-of-run markers reach every partition of these."""
