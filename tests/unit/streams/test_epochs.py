"""Epochs close only when no loop message caused at or before their horizon is in flight.

The simulation gives every (sender, receiver) pair a FIFO channel, as a Kafka partition does for
one producer, and lets hypothesis pick which channel delivers next and when a task reads input.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from parcours.streams.clock import UNKNOWN, Epochs, EpochVote


@dataclass(frozen=True)
class Loop:
    cause: int
    hops: int


@dataclass
class Task:
    epochs: Epochs
    inputs: deque[int]
    done: int | None = None
    """Event time of the last input read: every input up to it has been read."""
    closed: list[int] = field(default_factory=list)


class Sim:
    def __init__(self, inputs: list[list[int]], fanout: list[int]) -> None:
        n = len(inputs)
        self.tasks = [
            Task(Epochs(i, n), deque(sorted(set(times)))) for i, times in enumerate(inputs)
        ]
        self.channels: dict[tuple[int, int], deque[Loop | EpochVote]] = {
            (a, b): deque() for a in range(n) for b in range(n)
        }
        self.fanout = fanout
        self.sends = 0

    def send_loop(self, sender: int, message: Loop) -> None:
        target = (message.cause + message.hops + self.sends) % len(self.tasks)
        self.sends += 1
        self.tasks[sender].epochs.loop_sent(message.cause)
        self.channels[(sender, target)].append(message)

    def broadcast(self, sender: int, votes: list[EpochVote]) -> None:
        for vote in votes:
            for target in range(len(self.tasks)):
                self.channels[(sender, target)].append(vote)

    def read_input(self, i: int) -> None:
        task = self.tasks[i]
        cause = task.inputs.popleft()
        task.done = cause
        for hop in range(self.fanout[cause % len(self.fanout)]):
            self.send_loop(i, Loop(cause, hop + 2))
        vote = task.epochs.begin(task.done)
        if vote is not None:
            self.broadcast(i, [vote])

    def deliver(self, sender: int, target: int) -> None:
        message = self.channels[(sender, target)].popleft()
        task = self.tasks[target]
        if isinstance(message, Loop):
            if message.hops > 0:
                self.send_loop(target, Loop(message.cause, message.hops - 1))
            return
        votes, closed = task.epochs.receive(message, task.done)
        self.broadcast(target, votes)
        if closed is not None:
            self.check_closed(target, closed)

    def check_closed(self, i: int, horizon: int) -> None:
        in_flight = [m for queue in self.channels.values() for m in queue if isinstance(m, Loop)]
        assert all(m.cause > horizon for m in in_flight), (i, horizon, in_flight)
        assert all(t.inputs[0] > horizon for t in self.tasks if t.inputs)
        assert not self.tasks[i].closed or self.tasks[i].closed[-1] < horizon
        self.tasks[i].closed.append(horizon)

    def busy(self) -> list[tuple[int, int]]:
        return [pair for pair, queue in self.channels.items() if queue]


times = st.lists(st.integers(1, 60), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    inputs=st.lists(times, min_size=1, max_size=4),
    fanout=st.lists(st.integers(0, 2), min_size=1, max_size=5),
    data=st.data(),
)
def test_no_interleaving_closes_a_horizon_over_a_message_in_flight(
    inputs: list[list[int]], fanout: list[int], data: st.DataObject
) -> None:
    sim = Sim(inputs, fanout)
    for _ in range(2000):
        readers = [i for i, t in enumerate(sim.tasks) if t.inputs]
        busy = sim.busy()
        if not readers and not busy:
            break
        if readers and (not busy or data.draw(st.booleans())):
            sim.read_input(data.draw(st.sampled_from(readers)))
        else:
            sim.deliver(*data.draw(st.sampled_from(busy)))
    # Once everything is read and delivered, one more epoch brings every task to the end.
    last = (
        min(t.done for t in sim.tasks if t.done is not None)
        if all(t.done is not None for t in sim.tasks)
        else None
    )
    if last is None or sim.busy():
        return
    for i, task in enumerate(sim.tasks):
        vote = task.epochs.begin(task.done)
        if vote is not None:
            sim.broadcast(i, [vote])
    while busy := sim.busy():
        sim.deliver(*data.draw(st.sampled_from(busy)))
    assert all(task.epochs.closed == last for task in sim.tasks)


def test_a_lone_task_closes_its_horizon_after_one_quiet_round() -> None:
    epochs = Epochs(0, 1, sent=None)
    vote = epochs.begin(100)
    assert vote == EpochVote(0, 0, 0, 100, None)
    assert epochs.receive(vote, 100) == ([], 100)
    assert epochs.closed == 100 and not epochs.running


def test_a_restored_task_never_makes_its_first_round_quiet() -> None:
    epochs = Epochs(0, 1)
    vote = epochs.begin(100)
    assert vote is not None and vote.sent == UNKNOWN
    votes, closed = epochs.receive(vote, 100)
    assert closed is None and votes == [EpochVote(0, 1, 0, 100, None)]
    assert epochs.receive(votes[0], 100) == ([], 100)


def test_a_loop_message_caused_before_the_horizon_holds_the_epoch_open() -> None:
    epochs = Epochs(0, 1, sent=None)
    epochs.loop_sent(50)
    vote = epochs.begin(100)
    assert vote is not None
    votes, closed = epochs.receive(vote, 100)
    assert closed is None
    epochs.loop_sent(150)  # caused after the horizon: does not hold it
    assert epochs.receive(votes[0], 100) == ([], 100)


def test_the_horizon_is_the_smallest_proposal_and_votes_survive_the_table() -> None:
    a, b = Epochs(0, 2, sent=None), Epochs(1, 2, sent=None)
    first = a.begin(300)
    assert first is not None
    joined, _ = b.receive(first, 200)
    restored = Epochs.from_json(1, 2, b.to_json(), sent=b.sent)
    assert restored == b
    assert joined == [EpochVote(0, 0, 1, 200, None)]
    assert a.receive(first, 300) == ([], None)
    assert a.receive(joined[0], 300) == ([], 200)
    assert b.receive(joined[0], 200) == ([], 200)


def test_a_resumed_owner_sends_its_vote_again_and_reports_unknown() -> None:
    epochs = Epochs(0, 2, sent=None)
    vote = epochs.begin(100)
    assert vote is not None
    again = epochs.resume()
    assert again == EpochVote(0, 0, 0, 100, UNKNOWN)
    epochs.receive(vote, 100)
    epochs.receive(again, 100)
    assert epochs.votes[(0, 0)][0] == (100, UNKNOWN)


@dataclass(frozen=True)
class Merge:
    cause: int


@dataclass(frozen=True)
class Closed:
    horizon: int


class TwoStages:
    """Identity tasks (links between them, merges to the journey tasks, each closed horizon sent
    to every journey task after the merges) and journey tasks (a merge sends a transfer to
    another journey task). Channels are FIFO per (sender, receiver), as on Kafka."""

    def __init__(self, inputs: list[list[int]], journeys: int, fanout: list[int]) -> None:
        self.identity = Sim(inputs, fanout)
        self.journeys = [Epochs(j, journeys) for j in range(journeys)]
        self.marks: list[dict[int, int]] = [{} for _ in range(journeys)]
        self.to_journey: dict[tuple[int, int], deque[Merge | Closed]] = {
            (i, j): deque() for i in range(len(inputs)) for j in range(journeys)
        }
        self.between: dict[tuple[int, int], deque[Merge | EpochVote]] = {
            (a, b): deque() for a in range(journeys) for b in range(journeys)
        }
        self.horizons: list[list[int]] = [[] for _ in range(journeys)]

    def identity_delivers(self, sender: int, target: int) -> None:
        message = self.identity.channels[(sender, target)][0]
        before = self.identity.tasks[target].closed[:]
        self.identity.deliver(sender, target)
        if isinstance(message, Loop) and message.hops % 2 == 0:  # this link revealed a merge
            journey = (message.cause + target) % len(self.journeys)
            self.to_journey[(target, journey)].append(Merge(message.cause))
        for horizon in self.identity.tasks[target].closed[len(before) :]:
            for j in range(len(self.journeys)):
                self.to_journey[(target, j)].append(Closed(horizon))

    def journey_input(self, sender: int, j: int) -> None:
        message = self.to_journey[(sender, j)].popleft()
        if isinstance(message, Merge):  # the loser's state goes to the survivor's task
            survivor = (message.cause * 7 + j) % len(self.journeys)
            self.between[(j, survivor)].append(message)
            self.journeys[j].loop_sent(message.cause)
            return
        self.marks[j][sender] = message.horizon
        vote = self.journeys[j].begin(self.frontier(j))
        self.broadcast(j, [vote] if vote else [])

    def frontier(self, j: int) -> int | None:
        """What a journey task's inputs allow: only once every identity task has closed one
        (like the stage's clock, which knows nothing until all its inputs have spoken)."""
        if len(self.marks[j]) < len(self.identity.tasks):
            return None
        return min(self.marks[j].values())

    def broadcast(self, sender: int, votes: list[EpochVote]) -> None:
        for vote in votes:
            for target in range(len(self.journeys)):
                self.between[(sender, target)].append(vote)

    def journey_delivers(self, sender: int, target: int) -> None:
        message = self.between[(sender, target)].popleft()
        if isinstance(message, Merge):
            return  # absorbed
        frontier = self.frontier(target)
        votes, closed = self.journeys[target].receive(message, frontier)
        self.broadcast(target, votes)
        if closed is not None:
            pending = [
                m.cause
                for queue in (*self.identity.channels.values(),)
                for m in queue
                if isinstance(m, Loop)
            ]
            pending += [
                m.cause for q in self.to_journey.values() for m in q if isinstance(m, Merge)
            ]
            pending += [m.cause for q in self.between.values() for m in q if isinstance(m, Merge)]
            assert all(cause > closed for cause in pending), (closed, sorted(pending)[:3])
            self.horizons[target].append(closed)

    def moves(self) -> list[tuple[str, int, int]]:
        sim = self.identity
        out = [("read", i, 0) for i, t in enumerate(sim.tasks) if t.inputs]
        out += [("identity", a, b) for (a, b) in sim.busy()]
        out += [("to_journey", a, b) for (a, b), q in self.to_journey.items() if q]
        out += [("journey", a, b) for (a, b), q in self.between.items() if q]
        return out


@settings(max_examples=300, deadline=None)
@given(
    inputs=st.lists(times, min_size=1, max_size=3),
    journeys=st.integers(1, 3),
    fanout=st.lists(st.integers(0, 2), min_size=1, max_size=5),
    data=st.data(),
)
def test_no_interleaving_of_links_merges_and_transfers_lets_a_journey_horizon_pass_a_pending_merge(
    inputs: list[list[int]], journeys: int, fanout: list[int], data: st.DataObject
) -> None:
    world = TwoStages(inputs, journeys, fanout)
    for _ in range(3000):
        moves = world.moves()
        if not moves:
            break
        kind, a, b = data.draw(st.sampled_from(moves))
        if kind == "read":
            world.identity.read_input(a)
        elif kind == "identity":
            world.identity_delivers(a, b)
        elif kind == "to_journey":
            world.journey_input(a, b)
        else:
            world.journey_delivers(a, b)
    assert all(h == sorted(set(h)) for h in world.horizons)
