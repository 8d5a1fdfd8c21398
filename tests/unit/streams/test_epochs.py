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
