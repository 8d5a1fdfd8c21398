"""Event time across partitions, pure: watermarks (min over inputs) and end-of-run agreement.

A stage's watermark is the minimum of its inputs' watermarks, as in Flink, so no result depends on
which partition ran ahead. In live mode an input that has been silent for ``idle_ms`` of wall
clock stops holding time back: it is left out of the minimum (Flink's idleness); when every input
is silent, time follows the wall clock minus the allowed lateness.

A replay ends with markers. A stage whose tasks talk to each other (identity links, profile
transfers) cannot finish when its inputs have: messages between its tasks may still be in flight.
:class:`EndOfRun` runs rounds: every task announces the round to every task, saying whether it did
anything since its last announcement; when a round in which nobody did anything is complete,
every task has seen every message sent before it, and all tasks reach that verdict together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Watermarks:
    """Per-input event-time watermarks (epoch ms) of one task; the task's own is their minimum."""

    def __init__(
        self,
        inputs: int,
        *,
        idle_ms: int,
        lateness_ms: int,
        wall_ms: Callable[[], int],
    ) -> None:
        self.inputs = inputs
        self.idle_ms = idle_ms
        self.lateness_ms = lateness_ms
        self.wall_ms = wall_ms
        self.marks: dict[int, int] = {}
        self.heard: dict[int, int] = {}
        self.floor: int | None = None
        self.created = wall_ms()
        self.finished_at: int | None = None

    def observe(self, source: int, watermark: int) -> None:
        self.marks[source] = max(watermark, self.marks.get(source, watermark))
        self.heard[source] = self.wall_ms()

    def finish(self, watermark: int) -> None:
        """End of a replay: every input has reached ``watermark``."""
        for source in range(self.inputs):
            self.observe(source, watermark)
        self.floor = watermark if self.floor is None else max(self.floor, watermark)
        self.finished_at = self.floor

    @property
    def finished(self) -> bool:
        """Whether the last run ended here and nothing has moved time on since."""
        return self.finished_at is not None and self.floor == self.finished_at

    def current(self) -> int | None:
        now = self.wall_ms()
        active = [
            source
            for source in range(self.inputs)
            if now - self.heard.get(source, self.created) < self.idle_ms
        ]
        if any(source not in self.marks for source in active):
            return self.floor  # an input that is still talking has not said where it is yet
        if active:
            candidate = min(self.marks[source] for source in active)
        else:
            candidate = now - self.lateness_ms  # everyone is silent: time goes on regardless
        # Never moves back, even if an idle input wakes up behind the others.
        self.floor = candidate if self.floor is None else max(self.floor, candidate)
        return self.floor


@dataclass
class _Run:
    started: bool = False
    round: int = 0
    votes: dict[int, dict[int, bool]] = field(default_factory=dict)
    watermark: int | None = None
    done: bool = False


@dataclass(frozen=True)
class Announce:
    """Send to every task of the stage: ``task`` is at ``round``; ``active`` since the last one."""

    run_id: str
    round: int
    task: int
    active: bool
    watermark: int | None


class EndOfRun:
    """One task's side of the end-of-run rounds, for every run in flight."""

    def __init__(self, task: int, tasks: int) -> None:
        self.task = task
        self.tasks = tasks
        self.active = False
        self.runs: dict[str, _Run] = {}
        self.inputs_done: dict[str, set[int]] = {}

    def to_json(self) -> dict[str, Any]:
        """What survives a rebalance (``active`` does not: a new owner assumes activity)."""
        return {
            "inputs_done": {run: sorted(seen) for run, seen in self.inputs_done.items()},
            "runs": {
                run_id: {
                    "started": run.started,
                    "round": run.round,
                    "votes": [
                        [r, t, a] for r, ballot in run.votes.items() for t, a in ballot.items()
                    ],
                    "watermark": run.watermark,
                    "done": run.done,
                }
                for run_id, run in self.runs.items()
            },
        }

    @classmethod
    def from_json(
        cls, task: int, tasks: int, data: dict[str, Any] | None, *, active: bool
    ) -> EndOfRun:
        """``data`` None: a task with nothing recorded yet."""
        end = cls(task, tasks)
        end.active = active
        if data is None:
            return end
        end.inputs_done = {run: set(seen) for run, seen in data["inputs_done"].items()}
        for run_id, run in data["runs"].items():
            votes: dict[int, dict[int, bool]] = {}
            for r, t, a in run["votes"]:
                votes.setdefault(r, {})[t] = a
            end.runs[run_id] = _Run(
                run["started"], run["round"], votes, run["watermark"], run["done"]
            )
        return end

    def touched(self) -> None:
        """This task sent or changed something: the current round is not a quiet one."""
        self.active = True

    def input_done(
        self, run_id: str, source: int, sources: int, watermark: int | None
    ) -> Announce | None:
        """An upstream marker arrived; once all ``sources`` have, round 0 starts."""
        seen = self.inputs_done.setdefault(run_id, set())
        seen.add(source)
        run = self.runs.setdefault(run_id, _Run())
        if watermark is not None:
            run.watermark = max(watermark, run.watermark or watermark)
        if run.started or len(seen) < sources:
            return None
        run.started = True
        return self._announce(run_id, run)

    def vote(self, announce: Announce) -> Announce | bool:
        """A task's announcement: the next announcement to send, True once quiet, else False."""
        run = self.runs.setdefault(announce.run_id, _Run())
        if run.done:
            return False
        if announce.watermark is not None:
            run.watermark = max(announce.watermark, run.watermark or announce.watermark)
        run.votes.setdefault(announce.round, {})[announce.task] = announce.active
        ballot = run.votes.get(run.round, {})
        if not run.started or len(ballot) < self.tasks:
            return False
        if not any(ballot.values()):
            run.done = True
            return True
        run.round += 1
        return self._announce(announce.run_id, run)

    def _announce(self, run_id: str, run: _Run) -> Announce:
        active, self.active = self.active, False
        return Announce(run_id, run.round, self.task, active, run.watermark)
