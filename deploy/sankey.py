"""The flow of channel switches as a Sankey diagram in inline SVG (no script, nothing fetched):
channels left on the left, channels reached on the right, one band per channel pair whose width
is its number of pivots; red bands are mostly failure-driven."""

from __future__ import annotations

import html
from typing import Any

Rows = list[dict[str, Any]]

WIDTH, TOP, PLOT, GAP, NODE = 880, 34, 420, 10, 14
LEFT_X, RIGHT_X = 170, WIDTH - 170 - NODE
CHOICE, FAILURE = "37,99,235", "220,38,38"


def _e(value: object) -> str:
    return html.escape(str(value))


def _stack(totals: dict[str, int], scale: float) -> dict[str, float]:
    """Each node's top, largest first, GAP apart."""
    tops, y = {}, float(TOP)
    for name in sorted(totals, key=lambda n: (-totals[n], n)):
        tops[name] = y
        y += totals[name] * scale + GAP
    return tops


def _band(x0: float, y0: float, x1: float, y1: float, height: float) -> str:
    middle = (x0 + x1) / 2
    return (
        f"M{x0:.1f},{y0:.1f} C{middle:.1f},{y0:.1f} {middle:.1f},{y1:.1f} {x1:.1f},{y1:.1f} "
        f"L{x1:.1f},{y1 + height:.1f} C{middle:.1f},{y1 + height:.1f} {middle:.1f},"
        f"{y0 + height:.1f} {x0:.1f},{y0 + height:.1f} Z"
    )


def _node(x: float, y: float, height: float, name: str, total: int, *, left: bool) -> str:
    label_x, anchor = (x - 8, "end") if left else (x + NODE + 8, "start")
    return (
        f'<rect x="{x}" y="{y:.1f}" width="{NODE}" height="{max(height, 1):.1f}" fill="#374151" '
        f'class="bar"><title>{_e(name)}: {total} pivots</title></rect>'
        f'<text x="{label_x}" y="{y + height / 2 + 4:.1f}" text-anchor="{anchor}" class="axis">'
        f"{_e(name)} ({total})</text>"
    )


def sankey(pivots: Rows) -> str:
    """``pivots``: rows of the pivot_matrix query (from_channel, to_channel, pivots,
    failure_driven_pivots)."""
    if not pivots:
        return "<p>No channel switches yet.</p>"
    out: dict[str, int] = {}
    into: dict[str, int] = {}
    for row in pivots:
        out[row["from_channel"]] = out.get(row["from_channel"], 0) + row["pivots"]
        into[row["to_channel"]] = into.get(row["to_channel"], 0) + row["pivots"]
    total = sum(out.values())
    scale = (PLOT - GAP * (max(len(out), len(into)) - 1)) / total
    left, right = _stack(out, scale), _stack(into, scale)
    height = max(
        max(left[n] + out[n] * scale for n in out), max(right[n] + into[n] * scale for n in into)
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height + 16:.0f}" width="{WIDTH}" '
        f'height="{height + 16:.0f}" role="img" aria-label="channel switches">',
        f'<text x="{LEFT_X + NODE}" y="16" text-anchor="end" class="axis"><tspan font-weight="600">'
        "channel left</tspan></text>",
        f'<text x="{RIGHT_X}" y="16" class="axis"><tspan font-weight="600">channel reached'
        "</tspan></text>",
    ]
    used_out = dict.fromkeys(out, 0.0)
    used_in = dict.fromkeys(into, 0.0)
    ordered = sorted(pivots, key=lambda r: (left[r["from_channel"]], right[r["to_channel"]]))
    for row in ordered:
        source, target, n = row["from_channel"], row["to_channel"], row["pivots"]
        band = n * scale
        y0, y1 = left[source] + used_out[source], right[target] + used_in[target]
        used_out[source] += band
        used_in[target] += band
        share = row["failure_driven_pivots"] / n
        color = FAILURE if share >= 0.5 else CHOICE
        title = f"{source} → {target}: {n} pivots, {share:.0%} failure-driven"
        parts.append(
            f'<path d="{_band(LEFT_X + NODE, y0, RIGHT_X, y1, band)}" '
            f'fill="rgba({color},0.45)" stroke="rgba({color},0.8)" stroke-width="0.5" '
            f'class="flow"><title>{_e(title)}</title></path>'
        )
    for name, top in left.items():
        parts.append(_node(LEFT_X, top, out[name] * scale, name, out[name], left=True))
    for name, top in right.items():
        parts.append(_node(RIGHT_X, top, into[name] * scale, name, into[name], left=False))
    parts.append("</svg>")
    legend = (
        '<div class="legend"><span class="key"><i style="background:rgba(37,99,235,.6)"></i>'
        'mostly by choice</span><span class="key"><i style="background:rgba(220,38,38,.6)"></i>'
        "mostly failure-driven (the channel left had failed the customer)</span></div>"
    )
    return legend + "".join(parts)
