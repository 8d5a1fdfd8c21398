"""Topic names (before the ``PARCOURS_TOPIC_PREFIX``)."""

from __future__ import annotations

TOUCHPOINTS = "touchpoints"
RESOLVED = "touchpoints.resolved"
DEAD_LETTERS = "deadletters"
JOURNEYS = "journeys"
PIVOTS = "pivots"
DROPOFFS = "dropoffs"
FOLLOWUPS = "followups"

ALL = (TOUCHPOINTS, RESOLVED, DEAD_LETTERS, JOURNEYS, PIVOTS, DROPOFFS, FOLLOWUPS)
SINK_INPUTS = (RESOLVED, DEAD_LETTERS)
"""What the ClickHouse sink consumes; markers are fanned out to every partition of these."""
