"""A few hundred generated bad lines mixed among good ones through `parcours replay` on the running
stack: every bad line is reported with its number and dead-lettered, and every good event is in
ClickHouse (the counts add up)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from parcours.sinks.backend import Backend

from tests.integration.conftest import eventually, query
from tests.integration.test_guard import _good_lines, _parcours, _summary

pytestmark = pytest.mark.integration

Breaker = Callable[[random.Random, dict[str, object], str], str]


def _marked(event: dict[str, object], mark: str) -> dict[str, object]:
    """The event under id ``mark``, written first so that any cut after it keeps it."""
    return {"event_id": mark} | {k: v for k, v in event.items() if k != "event_id"}


def _truncated(rng: random.Random, event: dict[str, object], mark: str) -> str:
    text = json.dumps(_marked(event, mark))
    return text[: rng.randrange(len(mark) + 16, len(text) - 1)]


def _wrong_type(rng: random.Random, event: dict[str, object], mark: str) -> str:
    field = rng.choice(["channel", "action", "identities"])
    return json.dumps(dict(event, event_id=mark, **{field: rng.choice([17, [], True])}))


def _unknown_channel(rng: random.Random, event: dict[str, object], mark: str) -> str:
    return json.dumps(dict(event, event_id=mark, channel=rng.choice(["fax", "pigeon", ""])))


def _missing_field(rng: random.Random, event: dict[str, object], mark: str) -> str:
    damaged = dict(event, event_id=mark)
    del damaged[rng.choice(["occurred_at", "channel", "action"])]
    return json.dumps(damaged)


def _not_an_object(rng: random.Random, event: dict[str, object], mark: str) -> str:
    return rng.choice([json.dumps([mark]), json.dumps(mark), f"{mark} {rng.random()}", f"<{mark}>"])


def _bad_time(rng: random.Random, event: dict[str, object], mark: str) -> str:
    when = rng.choice(["yesterday", "2026-13-01T00:00:00Z", "", "12:00"])
    return json.dumps(dict(event, event_id=mark, occurred_at=when))


BREAKERS: tuple[Breaker, ...] = (
    _truncated,
    _wrong_type,
    _unknown_channel,
    _missing_field,
    _not_an_object,
    _bad_time,
)


def test_hundreds_of_bad_lines_among_good_ones_add_up(
    data_dir: Path, reader: Backend, tmp_path: Path
) -> None:
    seed, good = _good_lines(600)
    rng = random.Random(seed)
    lines: list[str] = list(good)
    for n in range(300):
        mark = f"fuzz-{seed}-{n}"
        line = rng.choice(BREAKERS)(rng, json.loads(rng.choice(good)), mark)
        at = rng.randrange(len(lines) + 1)
        lines.insert(at, line)
    bad_at = [i + 1 for i, line in enumerate(lines) if f"fuzz-{seed}-" in line]
    path = tmp_path / "fuzzed.jsonl"
    path.write_text("\n".join(lines) + "\n")

    done = _parcours("replay", str(path), "--data-dir", str(data_dir))

    assert done.returncode == 0, done.stderr
    summary = _summary(done)
    assert (summary["accepted"], summary["rejected"]) == (600, 300)
    reported = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    assert [int(line.split(":")[0].removeprefix("line ")) for line in reported] == bad_at
    assert all(len(line.split(": ", 1)[1]) > 3 for line in reported)  # each says why
    stored = query(
        reader,
        f"SELECT uniqExact(event_id) AS n FROM {{db}}.touchpoints WHERE event_id LIKE 'ev-{seed}-%'",
    )
    assert stored == [{"n": 600}]
    dead = eventually(
        lambda: query(
            reader,
            "SELECT line FROM {db}.dead_letters "
            f"WHERE stage = 'ingest' AND position(payload, 'fuzz-{seed}-') > 0 ORDER BY line",
        ),
        lambda rows: len(rows) >= len(bad_at),
    )
    assert [row["line"] for row in dead] == bad_at
