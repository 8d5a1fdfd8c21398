"""``parcours report --html FILE``: one self-contained page (inline CSS and SVG, nothing fetched)
with the figures a marketing lead asks for: the pivot matrix as a heatmap and the channel switches
as a flow, the funnel, drop-offs and recoveries over time, the channels' KPIs (average basket,
satisfaction, returns across channels) and what a failing channel costs in satisfaction."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parcours.deploy.report import cell, refresh_kpis, with_currency
from parcours.deploy.sankey import sankey
from parcours.sinks.backend import Backend, rows_of
from parcours.sinks.library import load

Rows = list[dict[str, Any]]

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2")


def _rows(reader: Backend, sql: str) -> Rows:
    rows: Rows = rows_of(reader.query(sql.replace("{db}", reader.database)))
    return rows


def _library(reader: Backend, name: str, **params: str) -> Rows:
    rows: Rows = rows_of(reader.query(load(name).render(reader.database, params)))
    return rows


def _e(value: object) -> str:
    return html.escape(str(value))


def _heatmap(pivots: Rows) -> str:
    sources = sorted({r["from_channel"] for r in pivots})
    targets = sorted({r["to_channel"] for r in pivots})
    if not pivots:
        return "<p>No pivots yet.</p>"
    cell, left, top = 64, 110, 90
    most = max(r["pivots"] for r in pivots)
    found = {(r["from_channel"], r["to_channel"]): r for r in pivots}
    width, height = left + cell * len(targets) + 10, top + cell * len(sources) + 10
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="pivot matrix">'
    ]
    for j, target in enumerate(targets):
        x = left + j * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{top - 8}" transform="rotate(-40 {x} {top - 8})" class="axis">{_e(target)}</text>'
        )
    for i, source in enumerate(sources):
        y = top + i * cell
        parts.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end" class="axis">{_e(source)}</text>'
        )
        for j, target in enumerate(targets):
            row = found.get((source, target))
            x = left + j * cell
            if row is None:
                parts.append(
                    f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="#f3f4f6"/>'
                )
                continue
            share = row["failure_driven_pivots"] / row["pivots"]
            alpha = 0.15 + 0.85 * row["pivots"] / most
            color = (
                f"rgba(220,38,38,{alpha:.2f})" if share >= 0.5 else f"rgba(37,99,235,{alpha:.2f})"
            )
            title = f"{source} → {target}: {row['pivots']} pivots, {share:.0%} failure-driven"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{color}" class="cell">'
                f"<title>{_e(title)}</title></rect>"
                f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2}" text-anchor="middle" class="value">{row["pivots"]}</text>'
                f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 14}" text-anchor="middle" class="small">{share:.0%} fail</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _bars(
    labels: list[str],
    series: dict[str, list[float]],
    *,
    label: str,
    x_axis: str,
    y_axis: str,
) -> str:
    """Grouped vertical bars: one group per label, one bar per series; both axes titled."""
    if not labels or not any(v for values in series.values() for v in values):
        return "<p>Nothing yet.</p>"
    bar = 22 if len(series) == 1 else 12
    group = max(32, (bar + 2) * len(series) + 12)
    left, top, plot = 70, 20, 220
    width, height = max(left + group * len(labels) + 20, 240), top + plot + 90
    most = max((v for values in series.values() for v in values), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{_e(label)}">'
    ]
    parts.append(
        f'<line x1="{left}" y1="{top + plot}" x2="{width - 10}" y2="{top + plot}" stroke="#9ca3af"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot}" stroke="#9ca3af"/>'
    )
    for tick in (0, most / 2, most):
        y = top + plot - plot * tick / most
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="small">{tick:,.4g}</text>'
        )
    middle = top + plot / 2
    parts.append(
        f'<text x="14" y="{middle}" transform="rotate(-90 14 {middle})" text-anchor="middle" class="axis">{_e(y_axis)}</text>'
        f'<text x="{(left + width) / 2}" y="{height - 4}" text-anchor="middle" class="axis">{_e(x_axis)}</text>'
    )
    for g, name in enumerate(labels):
        x0 = left + g * group + 4
        for s, (series_name, values) in enumerate(series.items()):
            value = values[g]
            h = plot * value / most
            parts.append(
                f'<rect x="{x0 + s * (bar + 2)}" y="{top + plot - h:.1f}" width="{bar}" height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}" class="bar">'
                f"<title>{_e(name)} · {_e(series_name)}: {value:g}</title></rect>"
            )
        lx = x0 + 6
        parts.append(
            f'<text x="{lx}" y="{top + plot + 12}" transform="rotate(45 {lx} {top + plot + 12})" class="small">{_e(name)}</text>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{PALETTE[s % len(PALETTE)]}"></i>{_e(n)}</span>'
        for s, n in enumerate(series)
    )
    return f'<div class="legend">{legend}</div>' + "".join(parts)


def _funnel(steps: list[tuple[str, int]]) -> str:
    if not steps or not steps[0][1]:
        return "<p>No product views yet.</p>"
    width, row, left = 640, 44, 150
    first = steps[0][1]
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {row * len(steps) + 10}" width="{width}" height="{row * len(steps) + 10}" role="img" aria-label="funnel">'
    ]
    for i, (name, value) in enumerate(steps):
        w = (width - left - 80) * value / first
        y = i * row + 5
        parts.append(
            f'<text x="{left - 10}" y="{y + 24}" text-anchor="end" class="axis">{_e(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 10}" fill="{PALETTE[0]}" opacity="{1 - i * 0.18:.2f}" class="bar"/>'
            f'<text x="{left + w + 8:.1f}" y="{y + 24}" class="value">{value} ({value / first:.0%})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: Rows) -> str:
    if not rows:
        return "<p>No rows.</p>"
    rows = with_currency(rows)
    # Headers wrap at word boundaries, so a wide table still fits the page.
    head = "".join(f"<th>{_e(str(c).replace('_', ' '))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell(k, v))}</td>" for k, v in r.items()) + "</tr>" for r in rows
    )
    return (
        f"<div class='fit'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
.sub{color:#6b7280;margin-top:0} .cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1.2rem 0}
.card{border:1px solid #e5e7eb;border-radius:10px;padding:.7rem 1rem;min-width:140px}
.card b{display:block;font-size:1.35rem} .card span{color:#6b7280;font-size:.85rem}
.axis{font-size:12px;fill:#374151} .value{font-size:12px;font-weight:600;fill:#111827} .small{font-size:10px;fill:#4b5563}
.fit{max-width:100%;overflow-x:auto} svg.chart{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:.8rem;margin-top:.6rem;width:100%} th{vertical-align:bottom;font-weight:600;color:#374151}
th,td{padding:.25rem .45rem;border-bottom:1px solid #f3f4f6;text-align:right} td{white-space:nowrap}
th:first-child,td:first-child{text-align:left} .legend{margin:.4rem 0;font-size:.85rem}
.key{margin-right:1rem} .key i{display:inline-block;width:10px;height:10px;margin-right:.3rem;border-radius:2px}
"""

CHECK = """
document.addEventListener('DOMContentLoaded', function () {
  var drawn = Array.prototype.filter.call(document.querySelectorAll('svg.chart'), function (svg) {
    return svg.querySelectorAll('rect.cell, rect.bar').length > 0;
  });
  document.body.setAttribute('data-charts-drawn', String(drawn.length));
});
"""


def _satisfaction_sections(reader: Backend, channels: Rows) -> list[tuple[str, str, str]]:
    """Average basket, satisfaction, returns across channels and the cost of a failing channel."""
    sold = [r for r in channels if r["average_basket"] is not None]
    rated = [r for r in channels if r["csat"] is not None]
    currency = ",".join(sorted({r["currency"] for r in sold if r["currency"]})) or "no currency"
    returns = _library(reader, "cross_channel_returns")
    after_failure = _library(reader, "satisfaction_after_failure")
    return [
        (
            "Average basket and satisfaction by channel",
            "Basket: revenue / purchases on the channel. CSAT (1-5): a score counts for the channel "
            "it rates (the order's purchase, the case's last contact, else its own).",
            _bars(
                [r["channel"] for r in sold],
                {f"average basket ({currency})": [r["average_basket"] for r in sold]},
                label="average basket",
                x_axis="channel of purchase",
                y_axis=f"average basket ({currency})",
            )
            + _bars(
                [r["channel"] for r in rated],
                {"mean CSAT": [r["csat"] for r in rated]},
                label="CSAT",
                x_axis="channel rated",
                y_axis="mean CSAT (1-5)",
            )
            + _table(channels),
        ),
        (
            "Returns across channels",
            "Each return matched to the purchase of its order: where it was bought, where it came back.",
            _table(returns),
        ),
        (
            "What a failing channel costs in satisfaction",
            "Mean CSAT of journeys in which the channel failed the customer (a failure-driven pivot "
            "out of it), against rated journeys without a failure.",
            _table(after_failure),
        ),
    ]


def build_html(reader: Backend) -> str:
    refresh_kpis(reader)
    summary = _rows(
        reader,
        "SELECT (SELECT uniqExact(event_id) FROM {db}.touchpoints) AS touchpoints, "
        "(SELECT uniqExact(profile_id) FROM {db}.touchpoints) AS customers, "
        "count() AS journeys, round(countIf(status = 'converted') / greatest(count(), 1), 3) AS conversion, "
        "(SELECT round(sum(coalesce(order_value, 0)), 2) FROM {db}.touchpoints WHERE action = 'purchase') AS revenue, "
        "(SELECT round(sum(coalesce(recovered_value, 0)), 2) FROM {db}.dropoffs) AS recovered_revenue, "
        "(SELECT arrayStringConcat(arraySort(groupUniqArrayIf(toString(currency), currency != '')), ',') "
        "FROM {db}.touchpoints WHERE action = 'purchase') AS currency "
        "FROM {db}.journeys",
    )
    summary = with_currency(summary)[0]
    pivots = _library(reader, "pivot_matrix")
    funnel = _library(reader, "conversion_funnel")
    steps = [
        (title, sum(int(r[column]) for r in funnel))
        for title, column in (
            ("viewed", "viewed"),
            ("added to cart", "added_to_cart"),
            ("started checkout", "started_checkout"),
            ("bought", "purchased"),
        )
    ]
    timeline = _rows(
        reader,
        "SELECT formatDateTime(toStartOfHour(deadline), '%m-%d %Hh') AS hour, count() AS dropoffs, "
        "countIf(recovered) AS recovered FROM {db}.dropoffs GROUP BY hour ORDER BY hour",
    )
    kpis = _rows(
        reader,
        "SELECT channel, sum(touchpoints) AS touchpoints, sum(customers) AS customer_days, "
        "sum(conversions) AS conversions, round(sum(revenue), 2) AS revenue, sum(pivots_out) AS pivots_out, "
        "sum(pivots_in) AS pivots_in, sum(failure_driven_out) AS failure_driven_out, "
        "sum(dropoffs) AS dropoffs, sum(followups_sent) AS followups_sent, sum(recovered) AS recovered, "
        "round(sum(recovered_revenue), 2) AS recovered_revenue, "
        "(SELECT arrayStringConcat(arraySort(groupUniqArrayIf(toString(currency), currency != '')), ',') "
        "FROM {db}.touchpoints WHERE action = 'purchase') AS currency "
        "FROM {db}.kpi_daily_channel GROUP BY channel ORDER BY touchpoints DESC, channel",
    )
    channels = _library(reader, "channel_kpis")
    cards = "".join(
        f'<div class="card"><b>{_e(cell(k, v))}</b><span>{_e(k.replace("_", " "))}</span></div>'
        for k, v in summary.items()
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        (
            "Where customers switch channel",
            "Rows: the channel left; columns: the one reached. Red: mostly failure-driven.",
            _heatmap(pivots),
        ),
        (
            "Channel switches as a flow",
            "Each band is the pivots from one channel (left) to another (right), its width their number.",
            sankey(pivots),
        ),
        (
            "Conversion funnel (all channels)",
            "Customers reaching each step on one channel within 24 hours (windowFunnel).",
            _funnel(steps),
        ),
        (
            "Drop-offs and recoveries over time",
            "By the hour the drop-off fired; recovered = bought within 7 days after the follow-up.",
            _bars(
                [r["hour"] for r in timeline],
                {
                    "drop-offs": [r["dropoffs"] for r in timeline],
                    "recovered": [r["recovered"] for r in timeline],
                },
                label="drop-offs over time",
                x_axis="hour the drop-off fired (UTC)",
                y_axis="drop-offs",
            ),
        ),
        (
            "Channels",
            "Daily KPIs per channel (materialized view kpi_daily_channel), summed.",
            _bars(
                [r["channel"] for r in kpis],
                {
                    "pivots out": [r["pivots_out"] for r in kpis],
                    "failure-driven out": [r["failure_driven_out"] for r in kpis],
                    "pivots in": [r["pivots_in"] for r in kpis],
                    "conversions": [r["conversions"] for r in kpis],
                },
                label="channel KPIs",
                x_axis="channel",
                y_axis="pivots, conversions",
            )
            + _table(kpis),
        ),
        *_satisfaction_sections(reader, channels),
    ]
    body = "".join(
        f"<h2 id='s{n}'>{_e(t)}</h2><p class='sub'>{_e(s)}</p>{chart}"
        for n, (t, s, chart) in enumerate(sections, start=1)
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>parcours report</title><style>{STYLE}</style></head><body>"
        f"<h1>parcours — omnichannel journeys</h1><p class='sub'>Generated {generated} from "
        f"database {_e(reader.database)}.</p><div class='cards'>{cards}</div>{body}"
        f"<script>{CHECK}</script></body></html>"
    )


def write_html(reader: Backend, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_html(reader), encoding="utf-8")
    return path.resolve()
