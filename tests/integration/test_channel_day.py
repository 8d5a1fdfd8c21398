"""Issue 13's day, replayed as a user replays it and queried with the CLI (exit code and output):
the omnichannel KPIs, returns across channels, and the contract's bare names giving one row per
event and per pivot in the configured database (not the default `parcours`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DAY = "2026-11-05T"
DATABASE = "shop"


def _event(event_id: str, at: str, channel: str, action: str, **more: Any) -> dict[str, Any]:
    identities = more.pop("identities", {"crm_id": f"crm-{event_id.split('-')[0]}"})
    return {
        "event_id": event_id,
        "occurred_at": f"{DAY}{at}:00Z",
        "channel": channel,
        "action": action,
        "identities": identities,
    } | more


def _order(customer: str, value: float) -> dict[str, Any]:
    return {"order_id": f"o-{customer}", "value": value, "currency": "EUR"}


def _csat(score: int, **rates: str) -> dict[str, Any]:
    return {"scale": "csat", "score": score} | rates


def day() -> list[dict[str, Any]]:
    events = []
    # Four web purchases (100, 200, 300, 400 EUR); w1's and w2's orders come back in a store,
    # w3 rates its order CSAT 5.
    for n, value in enumerate((100.0, 200.0, 300.0, 400.0), start=1):
        customer = f"w{n}"
        events.append(_event(f"{customer}-view", f"09:{n}0", "web", "product_view"))
        events.append(
            _event(f"{customer}-buy", f"09:{n}5", "web", "purchase", order=_order(customer, value))
        )
    for customer, value in (("w1", 100.0), ("w2", 200.0)):
        events.append(
            _event(
                f"{customer}-return", "15:00", "store", "return_requested",
                order=_order(customer, value),
            )
        )  # fmt: skip
    events.append(_event("w3-rate", "16:00", "web", "feedback", feedback=_csat(5, order_id="o-w3")))
    # Two store purchases (50, 150 EUR); s1 filled an anonymous web cart and logged in first
    # (its touchpoints are placed again once the login merges the profiles: the versions table
    # holds more rows than there are events); s2 rates its order CSAT 3.
    anonymous = {"anonymous_id": "ck-s1"}
    events += [
        _event("s1-cart", "10:00", "web", "add_to_cart", identities=anonymous,
               cart={"cart_id": "cart-s1", "value": 50.0, "currency": "EUR",
                     "items": [{"sku": "SKU-9", "quantity": 1, "unit_price": 50.0}]}),
        _event("s1-login", "10:05", "web", "identify",
               identities=anonymous | {"crm_id": "crm-s1"}),
        _event("s1-buy", "10:40", "store", "purchase", order=_order("s1", 50.0) | {"cart_id": "cart-s1"}),
        _event("s2-buy", "11:00", "store", "purchase", order=_order("s2", 150.0)),
        _event("s2-rate", "11:30", "store", "feedback", feedback=_csat(3, order_id="o-s2")),
    ]  # fmt: skip
    # The chatbot fails case k1, a call takes it up; the caller rates the case CSAT 2.
    contact = {"case_id": "k1", "topic": "delivery"}
    events += [
        _event("c-open", "12:00", "chatbot", "contact_started", contact=contact),
        _event("c-fail", "12:03", "chatbot", "chatbot_fallback", contact=contact),
        _event("c-call", "12:10", "phone", "contact_started", contact=contact),
        _event("c-end", "12:25", "phone", "contact_ended", contact=contact | {"outcome": "resolved"}),
        _event("c-rate", "12:26", "phone", "feedback", feedback=_csat(2, case_id="k1")),
    ]  # fmt: skip
    return events


def _parcours(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    env["PARCOURS_CLICKHOUSE_DATABASE"] = DATABASE
    return subprocess.run(
        [sys.executable, "-m", "parcours.deploy.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _sql(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    done = _parcours("sql", *args, "--format", "json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("channel-day")
    path = folder / "day.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in day()))
    data_dir = folder / "data"
    done = _parcours("replay", str(path), data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["accepted"], summary["rejected"]) == (len(day()), 0)
    return data_dir


def test_channel_kpis_of_the_day(replayed: Path) -> None:
    kpis = {row["channel"]: row for row in _sql(replayed, "--query", "channel_kpis")}
    web, store, phone = kpis["web"], kpis["store"], kpis["phone"]
    assert (web["conversions"], web["revenue"], web["average_basket"]) == (4, 1000.0, 250.0)
    assert (store["conversions"], store["revenue"], store["average_basket"]) == (2, 200.0, 100.0)
    assert (web["currency"], store["currency"]) == ("EUR", "EUR")
    assert (web["csat"], store["csat"], phone["csat"]) == (5.0, 3.0, 2.0)
    assert kpis["chatbot"]["csat"] is None
    assert (web["returns"], web["return_rate"]) == (2, 0.5)
    assert (store["returns"], store["return_rate"]) == (0, 0.0)


def test_cross_channel_returns_of_the_day(replayed: Path) -> None:
    assert _sql(replayed, "--query", "cross_channel_returns") == [
        {
            "purchase_channel": "web",
            "return_channel": "store",
            "returns": 2,
            "returned_value": 300.0,
            "currency": "EUR",
        }
    ]


def test_bare_contract_names_give_one_row_per_event_and_per_pivot(replayed: Path) -> None:
    counted = _parcours(
        "sql", "SELECT count() AS n FROM touchpoints", "--format", "csv", data_dir=replayed
    )
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.splitlines() == ['"n"', str(len(day()))]
    # Two pivots: s1's web cart → store purchase, and the chatbot that failed → the call.
    assert _sql(replayed, "SELECT from_channel, to_channel, failure_driven FROM pivots "
                "ORDER BY from_channel") == [
        {"from_channel": "chatbot", "to_channel": "phone", "failure_driven": True},
        {"from_channel": "web", "to_channel": "store", "failure_driven": False},
    ]  # fmt: skip
    versions = _sql(
        replayed,
        "SELECT (SELECT count() FROM touchpoint_versions) AS touchpoints, "
        "(SELECT uniqExact(profile_id) FROM touchpoint_versions) AS profile_ids, "
        "(SELECT uniqExact(profile_id) FROM touchpoints) AS customers",
    )[0]
    # Whether a merge re-placed s1's web touchpoints under the surviving profile (more rows, a
    # stale profile id in the versions table) depends on how fast the stages ran; the
    # contract's names hold one row per event and the customers' current profiles either way.
    assert versions["touchpoints"] >= len(day())
    assert versions["profile_ids"] >= versions["customers"] == 7
