"""The stages' control logic with in-process fakes of the outbox and the tables."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from parcours.schemas.codec import Codec
from parcours.schemas.settings import Settings
from parcours.streams import stages
from parcours.streams.stages import IdentityStage


class FakeOutbox:
    """Records what a stage sends; every topic has ``partitions`` partitions."""

    def __init__(self, partitions: int = 2) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self._partitions = partitions

    def partitions(self, name: str) -> int:
        return self._partitions

    async def everywhere(self, name: str, schema: str, record: dict[str, Any]) -> None:
        self.sent.append((name, schema, record))


def identity_stage(control: dict[str, dict[str, Any]]) -> IdentityStage:
    settings = Settings(watermark_idle_seconds=30)
    return IdentityStage(settings, Codec(), FakeOutbox(), control, {})  # type: ignore[arg-type]


def test_a_worker_restarted_after_a_replay_keeps_time_at_the_runs_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [1_800_000_000_000]
    monkeypatch.setattr(stages, "wall_ms", lambda: wall[0])
    control: dict[str, dict[str, Any]] = {}
    first = identity_stage(control)
    asyncio.run(first.finish("run-1", 0, 7_000))
    assert [schema for _, schema, _ in first.out.sent] == ["Marker"]  # type: ignore[attr-defined]

    wall[0] += 3_600_000  # an hour later, a new process takes the partition from the changelog
    restarted = identity_stage(control)
    assert restarted.clock(0).current() == 7_000

    restarted.observe(0, 1, wall[0])  # a live event: idleness applies again
    assert "identity-settled:0" not in control
    wall[0] += 30_000
    restarted.observe(0, 1, wall[0])
    assert restarted.clock(0).current() == wall[0]  # input 0 is idle, input 1 is live
