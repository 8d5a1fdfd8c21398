"""Event-time timers, pure: profiles indexed by the watermark at which time alone changes them.

The journey stage used to read every profile of a partition at every step of its watermark to
find the few whose journey expired or whose drop-off fell due; the cost grew with the number of
customers. The index keeps, per profile, the earliest watermark that can wake it, in a heap with
lazy deletion: a step pops only what is due.
"""

from __future__ import annotations

import heapq


class Timers:
    """One partition's wake-up times (watermark, epoch ms) by profile."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, str]] = []
        self.at: dict[str, int] = {}

    def set(self, profile: str, at: int | None) -> None:
        """``profile`` wakes at watermark ``at`` (None: time alone never changes it)."""
        if at is None:
            self.at.pop(profile, None)
            return
        if self.at.get(profile) == at:
            return
        self.at[profile] = at
        heapq.heappush(self.heap, (at, profile))

    def due(self, watermark: int) -> list[str]:
        """The profiles whose time has come, each once, in wake-up order (then by id)."""
        woken: list[str] = []
        while self.heap and self.heap[0][0] <= watermark:
            at, profile = heapq.heappop(self.heap)
            if self.at.get(profile) == at:
                del self.at[profile]
                woken.append(profile)
        return woken

    def waiting(self) -> list[str]:
        """Every profile with a wake-up time (the end of a run looks at all of them)."""
        return sorted(self.at)

    def __len__(self) -> int:
        return len(self.at)
