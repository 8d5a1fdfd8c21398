"""The commands that drive a whole pipeline: replay, sql, demo."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from parcours.deploy import console
from parcours.deploy.html_report import write_html
from parcours.deploy.replay import ReplayResult, replay
from parcours.deploy.report import print_report
from parcours.deploy.stack import pipeline
from parcours.schemas.settings import Settings
from parcours.sinks.backend import FORMATS
from parcours.sinks.client import open_reader
from rich.table import Table


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_replay(settings: Settings, path: Path, *, show_progress: bool) -> ReplayResult:
    with pipeline(settings) as stack:
        reader = open_reader(stack.settings)
        if not show_progress:
            return replay(stack.settings, path, reader=reader, check=stack.check)
        with console.replay_progress(_count_lines(path)) as progress:
            return replay(stack.settings, path, reader=reader, check=stack.check, progress=progress)


def run_sql(settings: Settings, query: str, fmt: str) -> None:
    reader = open_reader(settings)
    raw = reader.query(query, FORMATS[fmt])
    if fmt != "table":
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        return
    answer = json.loads(raw) if raw.strip() else {"meta": [], "data": []}
    table = Table(*(column["name"] for column in answer["meta"]))
    for row in answer["data"]:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.out.print(table)


def list_queries() -> None:
    from parcours.sinks.library import load, names

    table = Table("query", "question", "parameters (default)")
    for name in names():
        query = load(name)
        params = ", ".join(f"{p.name} {p.type} ({p.default})" for p in query.params)
        table.add_row(name, query.question, params)
    console.out.print(table)


def run_demo(settings: Settings, events: int) -> None:
    from parcours.deploy.generate import generate, write_jsonl

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "demo.jsonl"
    with open(path, "w") as handle:
        write_jsonl(generate(events), handle)
    console.err.print(f"[bold]parcours demo[/]: {events} touchpoints generated in {path}")
    started = time.monotonic()
    result = run_replay(settings, path, show_progress=True)
    elapsed = time.monotonic() - started
    console.out.print(
        f"\n[bold]{result.accepted}[/] touchpoints accepted, {result.rejected} rejected, "
        f"through Kafka → workers → ClickHouse in {elapsed:.1f}s "
        f"({result.accepted / elapsed:,.0f} events/s)\n"
    )
    reader = open_reader(settings)
    print_report(reader, console.out)
    page = write_html(reader, settings.data_dir / "report.html")
    console.out.print(
        f"\nData kept in {settings.data_dir}; try:\n"
        f'  .venv/bin/parcours sql "SELECT channel, count() FROM touchpoints GROUP BY channel" --data-dir {settings.data_dir}\n'
        f"  .venv/bin/parcours sql --list\n"
        f"\nHTML report (charts, opens without network): {page}"
    )
