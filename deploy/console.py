"""Terminal output: progress and tables on stderr, machine-readable results on stdout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from parcours.deploy.replay import Progress as ReplayProgress
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)
out = Console(soft_wrap=True)


@contextmanager
def replay_progress(total_lines: int | None) -> Iterator[ReplayProgress]:
    """A callback for replay phases: produce (lines sent) and process (partition markers)."""
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        produce = bar.add_task("produce", total=total_lines)
        process = bar.add_task("process", total=None)

        def update(phase: str, done: int, total: int | None) -> None:
            task = produce if phase == "produce" else process
            bar.update(
                task, completed=done, total=total if total is not None else bar.tasks[task].total
            )

        yield update
        bar.update(produce, completed=bar.tasks[produce].total)
