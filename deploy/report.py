"""The demo's report: what arrived, from which channels, and what was dead-lettered."""

from __future__ import annotations

from parcours.sinks.backend import Backend, rows_of
from rich.console import Console
from rich.table import Table


def _table(title: str, rows: list[dict[str, object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in rows[0] if rows else ["(no rows)"]:
        table.add_column(
            str(column),
            justify="right" if rows and isinstance(rows[0][column], int | float) else "left",
        )
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    return table


SECTIONS = (
    (
        "Touchpoints by channel",
        "SELECT channel, count() AS touchpoints, uniqExact(routing_key) AS identities, "
        "countIf(action = 'purchase') AS purchases, round(coalesce(sumIf(order_value, action = 'purchase'), 0), 2) AS revenue "
        "FROM {db}.touchpoints FINAL GROUP BY channel ORDER BY touchpoints DESC, channel",
    ),
    (
        "Top actions",
        "SELECT action, count() AS touchpoints, uniqExact(channel) AS channels "
        "FROM {db}.touchpoints FINAL GROUP BY action ORDER BY touchpoints DESC, action LIMIT 12",
    ),
    (
        "Dead letters by stage",
        "SELECT stage, count() AS dead_letters, any(reason) AS example_reason "
        "FROM {db}.dead_letters GROUP BY stage ORDER BY stage",
    ),
)


def print_report(reader: Backend, console: Console) -> None:
    for title, sql in SECTIONS:
        rows = rows_of(reader.query(sql.format(db=reader.database)))
        console.print(_table(title, rows))
