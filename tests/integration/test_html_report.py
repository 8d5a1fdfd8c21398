"""``parcours report --html``: one self-contained page whose charts render in a real browser
(Debian's chromium, headless), on the hand-built data set of the query tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from parcours.deploy.html_report import write_html
from parcours.sinks.backend import Backend

from tests.integration import test_channel_kpis
from tests.integration.test_queries import backend  # noqa: F401 - the same data set

pytestmark = pytest.mark.integration

CHARTS = 7  # pivot heatmap, switches flow, funnel, drop-offs over time, channel KPIs, basket, CSAT


@pytest.fixture(scope="module")
def day(backend: Backend) -> Backend:  # noqa: F811
    """The query tests' data set plus the day of scores and returns of the KPI tests."""
    for table, rows in (
        ("touchpoint_versions", test_channel_kpis.TOUCHPOINTS),
        ("pivot_versions", test_channel_kpis.PIVOTS),
    ):
        for row in rows:
            backend.insert(table, [row])
    return backend


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    logging = ["--enable-logging=stderr", "--v=0"]
    return subprocess.run(
        [binary, *flags, *logging, *args], capture_output=True, text=True, timeout=120
    )


def test_the_html_report_renders_every_chart_in_headless_chromium(
    day: Backend, tmp_path: Path
) -> None:
    page = write_html(day, tmp_path / "report.html")
    text = page.read_text()
    # Self-contained: nothing to fetch, so it opens without network access.
    assert "http://" not in text and "https://" not in text and " src=" not in text

    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    # The page's own script counts the charts that have drawn shapes once the page has loaded.
    assert f'data-charts-drawn="{CHARTS}"' in dom.stdout
    assert ":CONSOLE" not in dom.stderr, [x for x in dom.stderr.splitlines() if "CONSOLE" in x]
    assert "chatbot" in dom.stdout and "100% fail" in dom.stdout  # the failure-driven pivot
    # The flow of switches, amounts with their currency, axes titled, the new figures.
    assert 'aria-label="channel switches"' in dom.stdout and 'class="flow"' in dom.stdout
    assert "chatbot → phone: 2 pivots, 100% failure-driven" in dom.stdout
    # The web's average basket (A 100, P 100, Q 300), under a header naming the currency.
    assert "average basket (EUR)</th>" in dom.stdout and "<td>166.67</td>" in dom.stdout
    assert "revenue (EUR)" in dom.stdout and "650.00" in dom.stdout  # the revenue card
    assert "average basket (EUR)" in dom.stdout and "mean CSAT (1-5)" in dom.stdout
    assert "channel of purchase" in dom.stdout and "hour the drop-off fired (UTC)" in dom.stdout
    assert "Returns across channels" in dom.stdout and "-2.5" in dom.stdout

    shot = tmp_path / "report.png"
    taken = _chromium(f"--screenshot={shot}", "--window-size=1200,5200", page.as_uri())
    assert taken.returncode == 0, taken.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
