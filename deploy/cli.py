"""``parcours``: the one entry point (replay, sql, generate, worker, sink, up, down, bench, demo)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from parcours.deploy import console
from parcours.schemas.errors import ParcoursError
from parcours.schemas.settings import Settings, load_settings
from rich.table import Table

SQL_FORMATS = ("json", "csv", "table")


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _exit_on_sigterm() -> None:
    # SystemExit unwinds the with-blocks, so the embedded stack stops its children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """parcours: real-time omnichannel customer journeys."""


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Stack state and chDB data (PARCOURS_DATA_DIR).",
)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
@click.option(
    "--partitions", type=click.IntRange(1, 1024), help="Partitions per topic (PARCOURS_PARTITIONS)."
)
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (PARCOURS_WORKERS).")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
def replay(
    file: Path,
    data_dir: Path | None,
    partitions: int | None,
    workers: int | None,
    progress: bool | None,
) -> None:
    """Send every line of FILE.jsonl through the pipeline and wait until it is in ClickHouse.

    Bad lines are reported on stderr with their line number; the last line on stdout is JSON
    with the accepted and rejected counts.
    """
    from parcours.deploy.runs import run_replay

    settings = _settings(data_dir=data_dir, partitions=partitions, workers=workers)
    show = sys.stderr.isatty() if progress is None else progress
    result = run_replay(settings, file, show_progress=show)
    for rejection in result.rejections:
        # One line per rejection, however long: users grep for "line N:".
        console.err.print(
            f"line {rejection.line}: {rejection.reason}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    click.echo(json.dumps(result.summary()))


@cli.command()
@click.argument("query", required=False)
@click.option("--query", "name", help="A query of the library (sinks/queries/NAME.sql).")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="A library query's parameter."
)
@click.option(
    "--list", "listing", is_flag=True, help="List the library's queries and their parameters."
)
@data_dir_option
@click.option("--format", "fmt", type=click.Choice(SQL_FORMATS), default="table", show_default=True)
def sql(
    query: str | None,
    name: str | None,
    params: tuple[str, ...],
    listing: bool,
    data_dir: Path | None,
    fmt: str,
) -> None:
    """Run an analyst QUERY (or --query NAME from the library) on the configured ClickHouse
    (works while the stack runs)."""
    from parcours.deploy.runs import list_queries, run_sql
    from parcours.sinks.library import load

    if listing:
        list_queries()
        return
    if (query is None) == (name is None):
        raise click.UsageError("give either a QUERY or --query NAME (see --list)")
    settings = _settings(data_dir=data_dir)
    if name is not None:
        values = dict(_param(p) for p in params)
        query = load(name).render(settings.clickhouse_database, values)
    elif params:
        raise click.UsageError("--param goes with --query NAME")
    assert query is not None
    run_sql(settings, query, fmt)


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="--param")
    return key.strip(), value


@cli.command()
@click.option("--events", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--customers", type=click.IntRange(1), help="Distinct customers (default: events / 12)."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="JSONL file (default: stdout)."
)
def generate(events: int, seed: int, customers: int | None, out: Path | None) -> None:
    """Generate realistic omnichannel traffic as JSONL touchpoints."""
    from parcours.deploy.generate import generate as make
    from parcours.deploy.generate import write_jsonl

    if out is None:
        write_jsonl(make(events, seed, customers), sys.stdout)
        return
    with open(out, "w") as handle:
        count = write_jsonl(make(events, seed, customers), handle)
    console.err.print(f"wrote {count} touchpoints to {out}")


parent_pid_option = click.option(
    "--parent-pid",
    type=int,
    hidden=True,
    help="Exit when this process is gone (the embedded stack passes its own pid).",
)


@cli.command()
@parent_pid_option
def worker(parent_pid: int | None) -> None:
    """Run one stream worker (faust); start as many as you like in one consumer group."""
    from parcours.streams.app import run_worker

    run_worker(_settings(), parent_pid=parent_pid)


@cli.command()
@parent_pid_option
def sink(parent_pid: int | None) -> None:
    """Run the ClickHouse sink: batch the pipeline's topics into the analysts' tables."""
    from parcours.sinks.consumer import run_sink

    settings = _settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_sink(settings, parent_pid=parent_pid)


@cli.command()
@data_dir_option
@click.option("--port", type=click.IntRange(0, 65535), help="PARCOURS_COLLECTOR_PORT (0 = free).")
def collect(data_dir: Path | None, port: int | None) -> None:
    """Run the HTTP collector and profile API (POST /v1/touchpoints, GET /v1/profiles/...).

    Joins the `parcours up` stack of the data dir when no PARCOURS_KAFKA_BOOTSTRAP is set; its
    address goes to DATA_DIR/collector.json.
    """
    from parcours.deploy.collector import serve
    from parcours.deploy.stack import running_stack

    settings = _settings(data_dir=data_dir, collector_port=port)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.kafka_bootstrap is None:
        live = running_stack(settings)
        if live is None:
            raise click.ClickException(
                "no Kafka: set PARCOURS_KAFKA_BOOTSTRAP or start the stack (`parcours up`)"
            )
        settings = live
    serve(settings)


@cli.command()
@data_dir_option
@click.option("--partitions", type=click.IntRange(1, 1024))
@click.option("--workers", type=click.IntRange(1, 64))
@click.option(
    "--foreground", is_flag=True, help="Run the stack in this process (what `up` starts)."
)
def up(
    data_dir: Path | None, partitions: int | None, workers: int | None, foreground: bool
) -> None:
    """Start the embedded stack in the background (broker, workers, sink, SQL endpoint)."""
    from parcours.deploy.stack import clear_state, embedded_stack, running_stack, write_state

    settings = _settings(data_dir=data_dir, partitions=partitions, workers=workers)
    if running_stack(settings) is not None:
        raise click.ClickException(
            f"a stack already runs on {settings.data_dir}; `parcours down` first"
        )
    if not foreground:
        _spawn_supervisor(settings, partitions, workers)
        return
    with embedded_stack(settings) as stack:
        write_state(stack)
        try:
            while True:
                stack.check()
                time.sleep(1)
        finally:
            clear_state(settings.data_dir)


def _spawn_supervisor(settings: Settings, partitions: int | None, workers: int | None) -> None:
    from parcours.deploy.processes import log_tail, parcours_argv
    from parcours.deploy.stack import running_stack, wait_until

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    args = ["up", "--foreground", "--data-dir", str(settings.data_dir)]
    args += ["--partitions", str(partitions)] if partitions else []
    args += ["--workers", str(workers)] if workers else []
    log_path = settings.data_dir / "logs" / "stack.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            parcours_argv(*args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def ready() -> bool:
        if process.poll() is not None:
            tail = log_tail(log_path, 15)
            raise click.ClickException(f"the stack did not start; {log_path} ends with:\n{tail}")
        return running_stack(settings) is not None

    wait_until(ready, 120, "the stack to start")
    live = running_stack(settings)
    assert live is not None
    from parcours.deploy.collector import running_collector

    click.echo(
        json.dumps(
            {
                "kafka_bootstrap": live.kafka_bootstrap,
                "collector": running_collector(settings.data_dir),
                "data_dir": str(settings.data_dir),
                "pid": process.pid,
            }
        )
    )


@cli.command()
@data_dir_option
def down(data_dir: Path | None) -> None:
    """Stop the background stack started by `parcours up`."""
    from parcours.deploy.stack import STATE_FILE, running_stack, wait_until

    settings = _settings(data_dir=data_dir)
    if running_stack(settings) is None:
        click.echo("no stack running")
        return
    pid = int(json.loads((settings.data_dir / STATE_FILE).read_text())["pid"])
    os.kill(pid, signal.SIGTERM)
    # The supervisor exits only after its workers, sink and broker have stopped.
    wait_until(lambda: not _alive(pid), 90, "the stack to stop")
    click.echo("stopped")


@cli.command()
@click.option(
    "--customers",
    type=click.IntRange(400),
    default=10_000,
    show_default=True,
    help="The big day's customers (about 3.2 events each); the small day has a quarter.",
)
@click.option("--partitions", type=click.IntRange(1, 1024), default=4, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--paced-rate",
    type=click.FloatRange(1),
    default=None,
    help="[default: a third of the marginal rate]",
)
@click.option("--paced-seconds", type=click.FloatRange(1), default=60.0, show_default=True)
def bench(
    customers: int, partitions: int, workers: int, paced_rate: float | None, paced_seconds: float
) -> None:
    """Measure the core alone and the pipeline end to end: the marginal rate between two day
    sizes, CPU µs per event of each process, records per event of each topic, produce → visible
    latency at a paced rate. A summary, then the figures as JSON on the last line."""
    from parcours.deploy.bench import run_bench, summary

    figures = run_bench(_settings(), customers, partitions, workers, paced_rate, paced_seconds)
    for line in summary(figures):
        click.echo(line)
    click.echo(json.dumps(figures))


@cli.command("bench-state")
@click.option("--profiles", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--partitions", type=click.IntRange(1, 1024), default=4, show_default=True)
@click.option(
    "--days",
    type=click.IntRange(1, 365),
    default=30,
    show_default=True,
    help="Days of generated history per customer (past the retention, pruning bounds it).",
)
def bench_state(profiles: int, partitions: int, days: int) -> None:
    """Bytes of state per profile after DAYS of history, and a worker's memory and
    start-to-ready time on that many profiles (cold, then restarted on its state directory)
    for the memory and RocksDB stores; the last line is JSON."""
    from parcours.deploy.bench_state import bench_state as run

    click.echo(json.dumps(run(_settings(), profiles, partitions, days)))


@cli.command("bench-queries")
@click.option("--touchpoints", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True)
def bench_queries(touchpoints: int, runs: int) -> None:
    """Time every query of the analyst library on a generated data set; the last line is JSON."""
    from parcours.deploy.bench_queries import bench_queries as run

    result = run(touchpoints, runs)
    table = Table("query", "median ms", "rows", title=f"{result['rows']}")
    for name, figures in result["queries"].items():
        table.add_row(name, str(figures["median_ms"]), str(figures["rows"]))
    console.out.print(table)
    click.echo(json.dumps(result))


@cli.command("bench-collector")
@click.option("--events", type=click.IntRange(1000), default=100_000, show_default=True)
@click.option("--clients", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--batch", type=click.IntRange(1, 500), default=100, show_default=True)
def bench_collector(events: int, clients: int, batch: int) -> None:
    """Events/s the collector accepts (acknowledged by Kafka) on the embedded stack, from
    concurrent clients posting batches; the last line is JSON."""
    from parcours.deploy.bench_collector import bench_collector as run

    click.echo(json.dumps(run(_settings(), events, clients, batch)))


@cli.command("bench-profiles")
@click.option("--touchpoints", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--lookups", type=click.IntRange(10), default=500, show_default=True)
def bench_profiles(touchpoints: int, lookups: int) -> None:
    """Latency of the profile API on a generated data set (chDB); the last line is JSON."""
    from parcours.deploy.bench_queries import bench_profiles as run

    click.echo(json.dumps(run(touchpoints, lookups)))


@cli.command()
@click.option("--events", type=click.IntRange(1), default=20_000, show_default=True)
@data_dir_option
def demo(events: int, data_dir: Path | None) -> None:
    """Generate traffic, run the whole pipeline on the embedded stack, print the report."""
    from parcours.deploy.runs import run_demo

    run_demo(_settings(data_dir=data_dir), events)


@cli.command()
@data_dir_option
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report with charts as one self-contained HTML page.",
)
def report(data_dir: Path | None, html_file: Path | None) -> None:
    """Print the analysts' report from ClickHouse (and write it as HTML with --html FILE)."""
    from parcours.deploy.html_report import write_html
    from parcours.deploy.report import print_report
    from parcours.sinks.client import open_reader

    reader = open_reader(_settings(data_dir=data_dir))
    print_report(reader, console.out)
    if html_file is not None:
        console.out.print(f"HTML report: {write_html(reader, html_file)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A process that exited but was not reaped yet (a zombie) still answers kill(0).
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return False


def main() -> None:
    _exit_on_sigterm()
    try:
        cli(standalone_mode=True)
    except ParcoursError as exc:
        console.err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
