"""The browser snippet in headless Chromium against the stack's collector: a shop page on its own
origin loads ``/v1/parcours.js``, tracks a page view and a cart, hashes the e-mail in the browser,
sends one batch with fetch and the rest with a beacon → rows in ClickHouse."""

from __future__ import annotations

import functools
import html
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from parcours.deploy.collector import running_collector
from parcours.deploy.stack import Stack
from parcours.schemas.sdk import hash_email
from parcours.sinks.backend import Backend

from tests.integration.conftest import TEST_SOURCE, WRITE_KEY, eventually, query

pytestmark = pytest.mark.integration

PAGE = """<!doctype html>
<html><head><title>Shop</title><script src="{collector}/v1/parcours.js"></script></head>
<body><script>
(async () => {{
  try {{
    const tracker = parcours.init({{ url: "{collector}", key: "{key}", flushMs: 60000 }});
    tracker.page({{ run: "{run}" }});
    await tracker.identify("  {email_as_typed} ");
    tracker.cart("add_to_cart", {{ cart_id: "cart-{run}", value: 12.5, currency: "EUR",
      items: [{{ sku: "S-1", quantity: 1, unit_price: 12.5 }}] }}, {{ run: "{run}" }});
    const answer = await tracker.flush();
    tracker.track("product_view", {{ attributes: {{ run: "{run}" }} }});
    const beaconed = tracker.beacon();
    document.body.setAttribute("data-result", JSON.stringify({{
      answer: answer, beaconed: beaconed, identities: tracker.identities }}));
  }} catch (e) {{
    document.body.setAttribute("data-error", String(e));
  }}
}})();
</script></body></html>
"""


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A web server for the shop's pages, on another origin than the collector."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def _chromium(url: str) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _result(dom: str) -> dict[str, Any]:
    assert 'data-error="' not in dom, dom
    assert 'data-result="' in dom, f"the page's script did not finish: {dom}"
    start = dom.index('data-result="') + len('data-result="')
    return dict(json.loads(html.unescape(dom[start : dom.index('"', start)])))


def test_a_page_with_the_snippet_sends_events_that_land_in_clickhouse(
    stack: Stack, reader: Backend, shop: tuple[str, Path]
) -> None:
    collector = running_collector(stack.settings.data_dir)
    assert collector is not None
    origin, folder = shop
    run = uuid.uuid4().hex[:8]
    email = f"Jane.{run}@Example.COM"
    page = PAGE.format(collector=collector, key=WRITE_KEY, run=run, email_as_typed=email)
    (folder / "shop.html").write_text(page)

    result = _result(_chromium(f"{origin}/shop.html"))
    assert result["answer"] == {"status": 200, "body": {"accepted": 2, "rejected": []}}
    assert result["beaconed"] is True
    # SubtleCrypto with the SDK's normalisation gives the SDK's hash.
    assert result["identities"]["email_sha256"] == hash_email(email)

    rows = eventually(
        lambda: query(
            reader,
            "SELECT action, channel, source, identities, cart_id FROM {db}.touchpoints "
            f"WHERE attributes['run'] = '{run}' ORDER BY event_id",
        ),
        lambda rows: len(rows) == 3,
    )
    # Headless Chromium's virtual time can give events the same millisecond: no order asserted.
    by_action = {r["action"]: r for r in rows}
    assert sorted(by_action) == ["add_to_cart", "page_view", "product_view"]
    assert {r["channel"] for r in rows} == {"web"} and {r["source"] for r in rows} == {TEST_SOURCE}
    anonymous = result["identities"]["anonymous_id"]
    hashed = {"anonymous_id": anonymous, "email_sha256": hash_email(email)}
    assert by_action["page_view"]["identities"] == {"anonymous_id": anonymous}
    assert by_action["add_to_cart"]["identities"] == hashed
    assert by_action["add_to_cart"]["cart_id"] == f"cart-{run}"
    assert by_action["product_view"]["identities"] == hashed  # the beacon's batch
