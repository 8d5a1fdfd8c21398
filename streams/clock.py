"""Event time across partitions, pure: watermarks (min over inputs), epochs that close only when
a stage's own loop is quiet, and end-of-run agreement.

A stage's watermark is the minimum of its inputs' watermarks, as in Flink, so no result depends on
which partition ran ahead. In live mode an input that has been silent for ``idle_ms`` of wall
clock stops holding time back: it is left out of the minimum (Flink's idleness); when every input
is silent, time follows the wall clock minus the allowed lateness. While a replay is open (its
begin marker seen, its end not yet reached) no input is ever idle, and once it has ended time stays
at the run's end until an input carries an event again: a replay's results never depend on the
wall clock, however long its stack stays up afterwards.

The identity and journey stages talk to themselves (links, transfers, forwarded events), so their
inputs' watermark is not enough: work caused by an old event may still be in flight between their
tasks. :class:`Epochs` closes event time in steps: every task proposes the horizon its inputs
allow, and the tasks vote in rounds, each vote saying the earliest event time among the loop
messages the task sent since its previous vote. The epoch closes at the smallest proposal once a
complete round reports nothing sent at or before it: then every message caused by an event up to
that horizon has been delivered.

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
        idle_ms: int | None,
        lateness_ms: int,
        wall_ms: Callable[[], int],
    ) -> None:
        """``idle_ms`` None: inputs are never idle (a stage fed by another's closed epochs)."""
        self.inputs = inputs
        self.idle_ms = idle_ms
        self.lateness_ms = lateness_ms
        self.wall_ms = wall_ms
        self.marks: dict[int, int] = {}
        self.heard: dict[int, int] = {}
        self.floor: int | None = None
        self.created = wall_ms()
        self.finished_at: int | None = None
        self.replays: set[str] = set()
        """Replays open on the inputs: while there is one, no input counts as idle."""
        self.settled = False
        """A replay ended and no input has carried anything since: time stays where it ended."""

    def observe(self, source: int, watermark: int) -> None:
        self._mark(source, watermark)
        self.settled = False

    def _mark(self, source: int, watermark: int) -> None:
        self.marks[source] = max(watermark, self.marks.get(source, watermark))
        self.heard[source] = self.wall_ms()

    def finish(self, watermark: int) -> None:
        """End of a replay: every input has reached ``watermark``, and stays there until one
        speaks again (the silence after a replay is not live idleness)."""
        for source in range(self.inputs):
            self._mark(source, watermark)
        self.floor = watermark if self.floor is None else max(self.floor, watermark)
        self.finished_at = self.floor
        self.settled = True

    @property
    def finished(self) -> bool:
        """Whether the last run ended here and nothing has moved time on since."""
        return self.finished_at is not None and self.floor == self.finished_at

    def current(self) -> int | None:
        if self.settled:
            return self.floor
        now = self.wall_ms()
        active = [
            source
            for source in range(self.inputs)
            if self.idle_ms is None
            or self.replays
            or now - self.heard.get(source, self.created) < self.idle_ms
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

    def resume(self) -> list[Announce]:
        """What a new owner of this task sends again: the last owner may have recorded a round
        and died before its announcement left, and the other tasks wait for it. Announced as
        active (an extra round, never a premature end); a repeat of a vote already counted
        changes nothing else."""
        return [
            Announce(run_id, run.round, self.task, True, run.watermark)
            for run_id, run in self.runs.items()
            if run.started and not run.done
        ]

    def finished(self) -> list[tuple[str, int | None]]:
        """The runs this task saw end, with their watermarks: the last owner may have died
        before its markers to the next stage left."""
        return [(run_id, run.watermark) for run_id, run in self.runs.items() if run.done]

    def _announce(self, run_id: str, run: _Run) -> Announce:
        active, self.active = self.active, False
        return Announce(run_id, run.round, self.task, active, run.watermark)


UNKNOWN = -(2**62)
"""What a task that cannot vouch for its past sends reports (it just started or took a partition
over): earlier than any event, so its first round is never a quiet one."""


@dataclass(frozen=True)
class EpochVote:
    """Send to every task of the stage (the sender included): ``task`` is at ``round`` of ``epoch``."""

    epoch: int
    round: int
    task: int
    frontier: int | None
    """The horizon the task's inputs allowed when it entered the epoch (None: it knows none)."""
    sent: int | None
    """Earliest cause (event time) of the loop messages it sent since its previous vote."""


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class Epochs:
    """One task's side of the epoch rounds. ``sent`` lives in memory only (like the end-of-run
    ``active`` flag): a task restored from the table reports :data:`UNKNOWN` first.

    Why a quiet round closes the epoch: a task votes round r+1 only after it received every
    task's vote for round r, and every message a task sent before that vote travelled ahead of it
    on the same partition. So when nobody sent a loop message caused at or before the horizon
    between its votes for r and r+1, each such message sent earlier has been received, and what
    receiving it caused was sent before the receiver's vote r+1 — which said nothing was. Inputs
    cannot cause more: every on-time event up to the horizon reached each task before it entered
    the epoch (loop messages carry their cause's time, which never decreases along a chain).
    """

    task: int
    tasks: int
    closed: int | None = None
    epoch: int = 0
    round: int = 0
    running: bool = False
    frontier: int | None = None
    sent: int | None = UNKNOWN
    votes: dict[tuple[int, int], dict[int, tuple[int | None, int | None]]] = field(
        default_factory=dict
    )

    def loop_sent(self, cause: int) -> None:
        self.sent = _min(self.sent, cause)

    def begin(self, frontier: int | None) -> EpochVote | None:
        """Enter the next epoch when this task's inputs allow a horizon past the last closed one."""
        if (
            self.running
            or frontier is None
            or (self.closed is not None and frontier <= self.closed)
        ):
            return None
        return self._enter(frontier)

    def resume(self) -> EpochVote | None:
        """A new owner of the task: its vote for the current round may have been lost with the
        last owner; send it again, reporting UNKNOWN (receivers keep the earliest report)."""
        self.sent = UNKNOWN
        return self._vote() if self.running else None

    def receive(self, vote: EpochVote, frontier: int | None) -> tuple[list[EpochVote], int | None]:
        """A task's vote (this one's too); ``frontier``: what this task's inputs allow now.
        Returns the votes to send and the horizon this vote closed, if it closed one. A task's
        votes for the next epoch can come before the last votes of this one: they wait.
        No state is lost in a crash that a redelivery does not bring back: faust flushes table
        writes and sends before it commits an input offset."""
        if vote.epoch < self.epoch:
            return [], None  # a round of an epoch this task has already closed
        out: list[EpochVote] = []
        ballot = self.votes.setdefault((vote.epoch, vote.round), {})
        known = ballot.get(vote.task)
        if known is None:
            ballot[vote.task] = (vote.frontier, vote.sent)
        else:  # the same vote again (a new owner's): keep the earliest report
            ballot[vote.task] = (_min(known[0], vote.frontier), _min(known[1], vote.sent))
        if not self.running and vote.epoch == self.epoch:
            out.append(self._enter(_max(self.closed, frontier)))
        closed: int | None = None
        while self.running:
            ballot = self.votes.get((self.epoch, self.round), {})
            if len(ballot) < self.tasks:
                break
            horizon = self._horizon()
            if self._quiet(ballot, horizon):
                before = self.closed
                self._close(horizon)
                closed = self.closed if self.closed != before else closed
                if (self.epoch, 0) in self.votes:  # someone already entered the next one
                    out.append(self._enter(_max(self.closed, frontier)))
                continue
            self.round += 1
            out.append(self._vote())
        return out, closed

    def _quiet(self, ballot: dict[int, tuple[int | None, int | None]], horizon: int | None) -> bool:
        if horizon is None or (self.closed is not None and horizon <= self.closed):
            return True  # closing would not move time on: nothing to wait for
        return all(sent is None or sent > horizon for _, sent in ballot.values())

    def _horizon(self) -> int | None:
        proposals = [frontier for frontier, _ in self.votes[(self.epoch, 0)].values()]
        if any(p is None for p in proposals):
            return self.closed
        return min(p for p in proposals if p is not None)

    def _close(self, horizon: int | None) -> None:
        self.closed = _max(self.closed, horizon)
        self.votes = {k: v for k, v in self.votes.items() if k[0] > self.epoch}
        self.epoch, self.round, self.running, self.frontier = self.epoch + 1, 0, False, None

    def _enter(self, frontier: int | None) -> EpochVote:
        self.running, self.round, self.frontier = True, 0, frontier
        return self._vote()

    def _vote(self) -> EpochVote:
        vote = EpochVote(self.epoch, self.round, self.task, self.frontier, self.sent)
        self.sent = None
        return vote

    def to_json(self) -> dict[str, Any]:
        return {
            "closed": self.closed,
            "epoch": self.epoch,
            "round": self.round,
            "running": self.running,
            "frontier": self.frontier,
            "votes": [
                [e, r, t, f, s]
                for (e, r), ballot in self.votes.items()
                for t, (f, s) in ballot.items()
            ],
        }

    @classmethod
    def from_json(
        cls, task: int, tasks: int, data: dict[str, Any] | None, *, sent: int | None
    ) -> Epochs:
        """``data`` None: a task with nothing recorded yet."""
        epochs = cls(task, tasks, sent=sent)
        if data is None:
            return epochs
        epochs.closed, epochs.epoch, epochs.round = data["closed"], data["epoch"], data["round"]
        epochs.running, epochs.frontier = data["running"], data["frontier"]
        for e, r, t, f, s in data["votes"]:
            epochs.votes.setdefault((e, r), {})[t] = (f, s)
        return epochs
