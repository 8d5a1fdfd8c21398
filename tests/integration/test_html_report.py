"""``parcours report --html``: one self-contained page whose charts render in a real browser
(Debian's chromium, headless), on the hand-built data set of the query tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from parcours.deploy.html_report import write_html
from parcours.sinks.backend import Backend

from tests.integration.test_queries import backend  # noqa: F401 - the same data set

pytestmark = pytest.mark.integration

CHARTS = 4  # pivot heatmap, funnel, drop-offs over time, channel KPIs


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
    backend: Backend,  # noqa: F811
    tmp_path: Path,
) -> None:
    page = write_html(backend, tmp_path / "report.html")
    text = page.read_text()
    # Self-contained: nothing to fetch, so it opens without network access.
    assert "http://" not in text and "https://" not in text and " src=" not in text

    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    # The page's own script counts the charts that have drawn shapes once the page has loaded.
    assert f'data-charts-drawn="{CHARTS}"' in dom.stdout
    assert ":CONSOLE" not in dom.stderr, [x for x in dom.stderr.splitlines() if "CONSOLE" in x]
    assert "chatbot" in dom.stdout and "100% fail" in dom.stdout  # the failure-driven pivot

    shot = tmp_path / "report.png"
    taken = _chromium(f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri())
    assert taken.returncode == 0, taken.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
