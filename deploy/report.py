"""The demo's report: customers and journeys, channels, pivots, hand-offs, drop-offs,
follow-ups and recovered revenue, average basket, satisfaction and returns across channels, dead
letters. Amounts carry their currency."""

from __future__ import annotations

from typing import Any

from parcours.sinks.backend import Backend, rows_of
from parcours.sinks.library import load
from rich.console import Console
from rich.table import Table

MONEY = frozenset(
    {
        "revenue",
        "average_basket",
        "returned_value",
        "value_left",
        "value_abandoned",
        "recovered_revenue",
        "revenue_recovered",
        "first_touch_revenue",
        "last_touch_revenue",
    }
)
"""Columns that are amounts, shown with their currency (the rows' `currency` column)."""

CURRENCY = (
    "arrayStringConcat(arraySort(groupUniqArrayIf(toString(currency), {where}currency != '')), ',')"
)
"""The currencies of the amounts summed (several are listed: amounts are never converted)."""


def is_money(column: str) -> bool:
    return column.split(" (")[0] in MONEY


def with_currency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `currency` column moved next to the amounts: into their headers (``revenue (EUR)``)
    when the table has one currency, into each amount (``12.50 EUR``) when it has several."""
    if not rows or "currency" not in rows[0]:
        return rows
    currencies = {row["currency"] for row in rows if row["currency"]}
    if len(currencies) <= 1:
        suffix = f" ({currencies.pop()})" if currencies else ""
        return [
            {
                f"{key}{suffix}" if key in MONEY else key: value
                for key, value in row.items()
                if key != "currency"
            }
            for row in rows
        ]
    return [
        {
            key: f"{cell(key, value)} {row['currency']}".rstrip()
            if key in MONEY and value is not None
            else value
            for key, value in row.items()
            if key != "currency"
        }
        for row in rows
    ]


def cell(column: str, value: Any) -> str:
    """How a value reads in a table: amounts with two decimals and thousands separators."""
    if value is None:
        return "-"
    if is_money(column) and isinstance(value, int | float):
        return f"{value:,.2f}"
    return str(value)


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    rows = with_currency(rows)
    if len(rows) == 1 and len(rows[0]) > 4:
        # One wide row reads better as a list of figures than as a table narrower than a terminal.
        rows = [{"figure": k.replace("_", " "), "value": cell(k, v)} for k, v in rows[0].items()]
    table = Table(title=title, title_justify="left")
    for column in rows[0] if rows else ["(no rows)"]:
        numeric = is_money(column) or any(isinstance(r[column], int | float) for r in rows)
        # Spaces let a narrow terminal wrap the header instead of cutting it.
        table.add_column(str(column).replace("_", " "), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(cell(k, v) for k, v in row.items()))
    return table


SECTIONS = (
    (
        "Customers and journeys",
        "SELECT "
        "(SELECT uniqExact(profile_id) FROM {db}.touchpoints) AS profiles, "
        "(SELECT uniqExact(loser) FROM {db}.profile_merges) AS merges, "
        "(SELECT uniqExact(identity) FROM {db}.identity_warnings) AS shared_identities, "
        "count() AS journeys, "
        "countIf(length(channels) >= 2) AS cross_channel_journeys, "
        "countIf(status = 'converted') AS converted, "
        "round(countIf(status = 'converted') / greatest(count(), 1), 3) AS conversion_rate, "
        "sum(late_touchpoints) AS late_touchpoints "
        "FROM {db}.journeys",
    ),
    (
        "Journeys by number of channels",
        "SELECT length(channels) AS channels, count() AS journeys, "
        "countIf(status = 'converted') AS converted, round(avg(touchpoints), 1) AS avg_touchpoints, "
        "round(avg(pivots), 2) AS avg_pivots "
        "FROM {db}.journeys GROUP BY channels ORDER BY channels",
    ),
    (
        "Touchpoints by channel",
        "SELECT channel, count() AS touchpoints, uniqExact(routing_key) AS identities, "
        "countIf(action = 'purchase') AS purchases, round(coalesce(sumIf(order_value, action = 'purchase'), 0), 2) AS revenue, "
        + CURRENCY.format(where="action = 'purchase' AND ")
        + " AS currency FROM {db}.touchpoints GROUP BY channel ORDER BY touchpoints DESC, channel",
    ),
    (
        "Top actions",
        "SELECT action, count() AS touchpoints, uniqExact(channel) AS channels "
        "FROM {db}.touchpoints GROUP BY action ORDER BY touchpoints DESC, action LIMIT 12",
    ),
    (
        "Pivots by channel pair",
        "SELECT from_channel AS `from`, to_channel AS `to`, count() AS pivots, "
        "countIf(failure_driven) AS failure_driven_n, "
        "round(countIf(failure_driven) / count(), 3) AS failure_share, "
        "round(quantileExact(0.5)(gap_seconds) / 60, 1) AS median_gap_min "
        "FROM {db}.pivots GROUP BY from_channel, to_channel "
        "ORDER BY pivots DESC, from_channel, to_channel LIMIT 15",
    ),
    (
        "Hand-offs to assisted channels",
        "SELECT channel, count() AS handoffs, countIf(failure_driven) AS after_a_failure, "
        "countIf(repeat_contacts > 0) AS repeated_a_contact, "
        "countIf(cart_id != '') AS with_open_cart "
        "FROM {db}.handoffs GROUP BY channel ORDER BY handoffs DESC, channel",
    ),
    (
        "Drop-offs by kind",
        "SELECT replaceOne(kind, 'abandoned_', '') AS abandoned, count() AS dropoffs, "
        "round(sum(coalesce(value, 0)), 2) AS value_left, countIf(recovered) AS recovered_n, "
        "round(countIf(recovered) / count(), 3) AS recovery_rate, "
        "round(sum(coalesce(recovered_value, 0)), 2) AS recovered_revenue, "
        + CURRENCY.format(where="")
        + " AS currency FROM {db}.dropoffs GROUP BY kind ORDER BY kind",
    ),
    (
        "Follow-ups by status",
        "SELECT replaceOne(kind, 'abandoned_', '') AS abandoned, status, "
        "if(reason = '', '-', reason) AS why, count() AS followups, "
        "countIf(channel = 'email') AS email, countIf(channel = 'sms') AS sms, "
        "countIf(channel = 'push') AS push "
        "FROM {db}.followups GROUP BY kind, status, reason ORDER BY kind, status, why",
    ),
    (
        "Conversion funnel by channel (24 h window)",
        "QUERY:conversion_funnel",
    ),
    (
        "Channel KPIs (daily view kpi_daily_channel, summed)",
        "SELECT channel, sum(touchpoints) AS touchpoints, sum(conversions) AS conversions, "
        "round(sum(revenue), 2) AS revenue, sum(pivots_out) AS out, sum(pivots_in) AS in, "
        "sum(failure_driven_out) AS failed_out, sum(followups_sent) AS followups, "
        "round(sum(recovered_revenue), 2) AS recovered_revenue, "
        "(SELECT " + CURRENCY.format(where="action = 'purchase' AND ") + " FROM {db}.touchpoints) "
        "AS currency FROM {db}.kpi_daily_channel GROUP BY channel ORDER BY touchpoints DESC, channel",
    ),
    ("Average basket, satisfaction and returns by channel", "QUERY:channel_kpis"),
    ("Returns across channels (bought on, returned on)", "QUERY:cross_channel_returns"),
    ("Satisfaction after a channel failed the customer (CSAT)", "QUERY:satisfaction_after_failure"),
    (
        "Dead letters by stage",
        "SELECT stage, count() AS dead_letters, any(reason) AS example_reason "
        "FROM {db}.dead_letters GROUP BY stage ORDER BY stage",
    ),
)


WIDEST = 7
"""Columns of one printed table: a wider answer is printed in parts that each fit a terminal,
each repeating the first column."""


def _parts(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    if len(rows) < 2 or len(rows[0]) <= WIDEST:
        return [rows]
    first, *others = list(rows[0])
    size = -(-len(others) // -(-len(others) // (WIDEST - 1)))  # as even as possible
    groups = [others[i : i + size] for i in range(0, len(others), size)]
    return [[{k: row[k] for k in (first, *group)} for row in rows] for group in groups]


def print_report(reader: Backend, console: Console) -> None:
    refresh_kpis(reader)
    for title, sql in SECTIONS:
        if sql.startswith("QUERY:"):
            text = load(sql.removeprefix("QUERY:")).render(reader.database)
        else:
            text = sql.format(db=reader.database)
        parts = _parts(with_currency(rows_of(reader.query(text))))
        for n, rows in enumerate(parts, start=1):
            console.print(_table(title + (f" ({n}/{len(parts)})" if len(parts) > 1 else ""), rows))


def refresh_kpis(reader: Backend) -> None:
    """Bring the KPI view up to date (a read-only user may not: then it is at most a minute old)."""
    try:
        reader.command(f"SYSTEM REFRESH VIEW {reader.database}.kpi_daily_channel_mv")
        reader.command(f"SYSTEM WAIT VIEW {reader.database}.kpi_daily_channel_mv")
    except Exception:
        return
