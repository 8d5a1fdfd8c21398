"""Watermarks over several inputs, and the end-of-run rounds between a stage's tasks."""

from __future__ import annotations

from collections import deque

from parcours.streams.clock import Announce, EndOfRun, Watermarks


class Wall:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def marks(inputs: int = 3, wall: Wall | None = None) -> Watermarks:
    return Watermarks(inputs, idle_ms=30_000, lateness_ms=600_000, wall_ms=wall or Wall())


def test_the_watermark_is_the_minimum_once_every_input_has_spoken() -> None:
    w = marks()
    w.observe(0, 500)
    w.observe(1, 300)
    assert w.current() is None
    w.observe(2, 900)
    assert w.current() == 300


def test_the_watermark_never_moves_back() -> None:
    w = marks(1)
    w.observe(0, 500)
    w.observe(0, 200)
    assert w.current() == 500


def test_an_idle_input_stops_holding_time_back_after_the_idle_period() -> None:
    wall = Wall()
    w = marks(2, wall)
    w.observe(0, 2_000_000)
    w.observe(1, 100)
    wall.now += 29_999
    w.observe(0, 2_000_000)
    assert w.current() == 100
    wall.now += 1
    assert w.current() == 2_000_000


def test_an_input_never_heard_from_is_idle_after_the_idle_period() -> None:
    wall = Wall()
    w = marks(2, wall)
    w.observe(0, 5_000)
    assert w.current() is None
    wall.now += 30_000
    w.observe(0, 5_000)
    assert w.current() == 5_000


def test_when_every_input_is_silent_time_follows_the_wall_clock() -> None:
    wall = Wall()
    w = marks(1, wall)
    w.observe(0, 5_000)
    wall.now += 30_000
    assert w.current() == wall.now - 600_000


def test_finish_moves_every_input_to_the_end_of_the_file() -> None:
    w = marks()
    w.finish(7_000)
    assert w.current() == 7_000


def test_after_a_replay_ends_silence_does_not_move_time_to_the_wall_clock() -> None:
    """The stack of a finished replay may stay up for minutes (reports, a slow sink): its
    journeys must not expire by the wall clock meanwhile."""
    wall = Wall()
    w = marks(2, wall)
    w.observe(0, 5_000)
    w.observe(1, 6_000)
    w.finish(7_000)
    wall.now += 3_600_000
    assert w.current() == 7_000
    assert w.finished


def test_once_an_input_speaks_after_a_replay_live_idleness_applies_again() -> None:
    wall = Wall()
    w = marks(2, wall)
    w.finish(7_000)
    wall.now += 60_000
    w.observe(0, wall.now)
    assert w.current() == wall.now  # input 1 has been silent since the end of the run
    wall.now += 900_000
    assert w.current() == wall.now - 600_000  # both silent: the wall clock again


def run_rounds(tasks: int, chatter: dict[int, int]) -> tuple[list[str], int]:
    """Simulate ``tasks`` tasks; task t has ``chatter[t]`` messages left to pass on per round."""
    ends = [EndOfRun(t, tasks) for t in range(tasks)]
    queues: list[deque[Announce]] = [deque() for _ in range(tasks)]
    done: list[str] = []
    rounds = 0

    def broadcast(announce: Announce | None) -> None:
        if announce is not None:
            for q in queues:
                q.append(announce)

    for t in range(tasks):
        ends[t].touched()  # everyone processed data of the run
        broadcast(ends[t].input_done("run", 0, 1, 42))
    while any(queues):
        for t, q in enumerate(queues):
            while q:
                if chatter.get(t, 0) > 0:
                    chatter[t] -= 1
                    ends[t].touched()
                verdict = ends[t].vote(q.popleft())
                if isinstance(verdict, Announce):
                    rounds = max(rounds, verdict.round)
                    broadcast(verdict)
                elif verdict:
                    done.append(f"task {t}")
    return done, rounds


def test_a_quiet_round_ends_the_run_for_every_task_together() -> None:
    done, rounds = run_rounds(3, {})
    assert sorted(done) == ["task 0", "task 1", "task 2"]
    assert rounds == 1


def test_activity_between_rounds_buys_another_round() -> None:
    done, rounds = run_rounds(3, {1: 4})
    assert sorted(done) == ["task 0", "task 1", "task 2"]
    assert rounds > 1


def test_no_round_starts_before_all_upstream_markers() -> None:
    end = EndOfRun(0, 1)
    assert end.input_done("run", 0, 2, 10) is None
    announce = end.input_done("run", 1, 2, 20)
    assert announce == Announce("run", 0, 0, False, 20)
