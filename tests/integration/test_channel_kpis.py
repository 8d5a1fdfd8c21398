"""The omnichannel KPIs of the query library (channel_kpis, cross_channel_returns,
satisfaction_after_failure) and the views they read (ratings, returns), on the real engine, against
a small data set whose answers are worked out by hand."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from parcours.schemas.settings import load_settings
from parcours.sinks.backend import Backend, open_backend, rows_of
from parcours.sinks.library import load
from parcours.sinks.migrations import migrate

pytestmark = pytest.mark.integration

DAY = "2026-11-03"


def _tp(
    event_id: str, profile: str, journey: str, channel: str, action: str, at: str, **more: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "profile_id": profile,
        "journey_id": journey,
        "channel": channel,
        "action": action,
        "occurred_at": f"{DAY} {at}:00.000",
        "routing_key": f"crm_id:{profile}",
        "produced_at": f"{DAY} {at}:00.000",
        "kafka_partition": 0,
        "kafka_offset": 0,
        "version": 2,
    } | more


def _order(order_id: str, value: float) -> dict[str, Any]:
    return {"order_id": order_id, "order_value": value, "currency": "EUR"}


def _score(scale: str, score: int, order: str = "", case: str = "") -> dict[str, Any]:
    return {
        "feedback_scale": scale,
        "feedback_score": score,
        "feedback_order_id": order,
        "feedback_case_id": case,
    }


def _contact(case: str, outcome: str = "") -> dict[str, Any]:
    return {"case_id": case, "contact_topic": "delivery", "contact_outcome": outcome}


TOUCHPOINTS = [
    # P buys for 100 on the web, returns it in a store, rates the order CSAT 4 by e-mail (in a
    # later journey: the score still belongs to the purchase's journey and channel).
    _tp("p1", "P", "jP", "web", "product_view", "09:50"),
    _tp("p2", "P", "jP", "web", "purchase", "10:00", **_order("o1", 100.0)),
    _tp("p2", "P-old", "jOld", "web", "purchase", "10:00", **_order("o1", 100.0)) | {"version": 1},
    _tp("p3", "P", "jP2", "store", "return_requested", "12:00", **_order("o1", 100.0)),
    _tp("p4", "P", "jP2", "email", "feedback", "13:00", **_score("csat", 4, order="o1")),
    # Q buys for 300 on the web, sends 50 of it back on the web, gives the order NPS 10.
    _tp("q1", "Q", "jQ", "web", "purchase", "10:00", **_order("o2", 300.0)),
    _tp("q2", "Q", "jQ2", "web", "return_requested", "12:00", **_order("o2", 50.0)),
    _tp("q3", "Q", "jQ2", "email", "feedback", "13:00", **_score("nps", 10, order="o2")),
    # R buys for 60 in a store, scores the store NPS 3 (rating nothing in particular) and returns
    # an order nobody saw bought.
    _tp("r1", "R", "jR", "store", "purchase", "10:00", **_order("o3", 60.0)),
    _tp("r2", "R", "jR", "store", "feedback", "10:30", **_score("nps", 3)),
    _tp("r3", "R", "jR2", "store", "return_requested", "11:00", **_order("o9", 20.0)),
    # S: the chatbot fails case k1, a call resolves it, S rates the case CSAT 2 by SMS; a live chat
    # about k1 after the score does not take it over.
    _tp("s1", "S", "jS", "chatbot", "contact_started", "11:00", **_contact("k1")),
    _tp("s2", "S", "jS", "chatbot", "contact_ended", "11:05", **_contact("k1", "failed")),
    _tp("s3", "S", "jS", "phone", "contact_started", "11:10", **_contact("k1")),
    _tp("s4", "S", "jS", "phone", "contact_ended", "11:20", **_contact("k1", "resolved")),
    _tp("s5", "S", "jS2", "sms", "feedback", "11:30", **_score("csat", 2, case="k1")),
    _tp("s6", "S", "jS2", "live_chat", "contact_started", "12:00", **_contact("k1")),
    # T buys for 40 in the app and rates the order CSAT 5.
    _tp("t1", "T", "jT", "mobile_app", "purchase", "10:00", **_order("o4", 40.0)),
    _tp("t2", "T", "jT", "mobile_app", "feedback", "10:10", **_score("csat", 5, order="o4")),
]


def _pivot(event_id: str, journey: str, src: str, dst: str, **more: Any) -> dict[str, Any]:
    return {
        "journey_id": journey,
        "profile_id": journey[1:],
        "occurred_at": f"{DAY} 11:10:00.000",
        "from_channel": src,
        "to_channel": dst,
        "gap_seconds": 300.0,
        "failure_driven": True,
        "failure_event_id": "s2",
        "event_id": event_id,
        "version": 2,
        "retracted": 0,
    } | more


PIVOTS = [
    _pivot("s3", "jS", "chatbot", "phone"),
    _pivot("s3", "jS", "chatbot", "phone", failure_driven=False, version=1),
    # A failure-driven pivot a re-stitch retracted: P's journey was never failed.
    _pivot("p2", "jP", "web", "phone", version=3, retracted=1),
]


@pytest.fixture(scope="module")
def backend(
    server_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("kpis"),
        clickhouse_database=f"kpis_{uuid.uuid4().hex[:8]}",
        **server_settings,
    )
    engine = open_backend(settings)
    try:
        migrate(engine)
        for table, rows in (("touchpoint_versions", TOUCHPOINTS), ("pivot_versions", PIVOTS)):
            for row in rows:  # one block per row: several parts, as the sink writes them
                engine.insert(table, [row])
        yield engine
    finally:
        engine.close()


def run(backend: Backend, name: str, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = rows_of(backend.query(load(name).render(backend.database, params)))
    return rows


def test_each_score_counts_for_the_channel_and_journey_it_rates(backend: Backend) -> None:
    rows = rows_of(
        backend.query(
            f"SELECT event_id, scale, score, rates, channel, journey_id, feedback_channel "
            f"FROM {backend.database}.ratings ORDER BY event_id"
        )
    )
    assert rows == [
        {"event_id": "p4", "scale": "csat", "score": 4, "rates": "order", "channel": "web",
         "journey_id": "jP", "feedback_channel": "email"},
        {"event_id": "q3", "scale": "nps", "score": 10, "rates": "order", "channel": "web",
         "journey_id": "jQ", "feedback_channel": "email"},
        {"event_id": "r2", "scale": "nps", "score": 3, "rates": "own", "channel": "store",
         "journey_id": "jR", "feedback_channel": "store"},
        {"event_id": "s5", "scale": "csat", "score": 2, "rates": "case", "channel": "phone",
         "journey_id": "jS", "feedback_channel": "sms"},
        {"event_id": "t2", "scale": "csat", "score": 5, "rates": "order", "channel": "mobile_app",
         "journey_id": "jT", "feedback_channel": "mobile_app"},
    ]  # fmt: skip


def test_channel_kpis_average_basket_satisfaction_and_returns(backend: Backend) -> None:
    # web: P and Q bought (100 + 300: basket 200); P's order rated CSAT 4, Q's NPS 10 (one
    # promoter of one: +100); both orders came back (in a store, on the web): return rate 1.
    # store: R bought for 60; the store's own NPS 3 (a detractor: -100); the returned order o9
    # was never seen bought, so it is no store return. phone: the case's last contact, CSAT 2.
    kpis = {row["channel"]: row for row in run(backend, "channel_kpis")}
    assert list(kpis) == [
        "store", "web", "chatbot", "email", "mobile_app", "phone", "live_chat", "sms",
    ]  # fmt: skip
    assert kpis["web"] == {
        "channel": "web", "touchpoints": 4, "customers": 2, "conversions": 2,
        "conversion_rate": 1.0, "revenue": 400.0, "currency": "EUR", "average_basket": 200.0,
        "csat": 4.0, "nps": 100.0, "returns": 2, "return_rate": 1.0,
    }  # fmt: skip
    assert kpis["store"] == {
        "channel": "store", "touchpoints": 4, "customers": 2, "conversions": 1,
        "conversion_rate": 0.5, "revenue": 60.0, "currency": "EUR", "average_basket": 60.0,
        "csat": None, "nps": -100.0, "returns": 0, "return_rate": 0.0,
    }  # fmt: skip
    assert kpis["email"] == {
        "channel": "email", "touchpoints": 2, "customers": 2, "conversions": 0,
        "conversion_rate": 0.0, "revenue": 0.0, "currency": "", "average_basket": None,
        "csat": None, "nps": None, "returns": 0, "return_rate": None,
    }  # fmt: skip
    assert (kpis["phone"]["csat"], kpis["chatbot"]["csat"]) == (2.0, None)
    assert (kpis["mobile_app"]["average_basket"], kpis["mobile_app"]["csat"]) == (40.0, 5.0)
    assert run(backend, "channel_kpis", **{"from": "2026-11-04"}) == []


def test_cross_channel_returns_match_each_return_to_its_purchase(backend: Backend) -> None:
    assert run(backend, "cross_channel_returns") == [
        {"purchase_channel": "web", "return_channel": "store", "returns": 1,
         "returned_value": 100.0, "currency": "EUR"},
        {"purchase_channel": "unknown", "return_channel": "store", "returns": 1,
         "returned_value": 20.0, "currency": "EUR"},
        {"purchase_channel": "web", "return_channel": "web", "returns": 1,
         "returned_value": 50.0, "currency": "EUR"},
    ]  # fmt: skip


def test_satisfaction_after_failure_against_journeys_without_one(backend: Backend) -> None:
    # jS: the chatbot failed S (the current version of the pivot is failure-driven), rated 2
    # through the case. Rated journeys without a failure: jP (4; its failure-driven pivot was
    # retracted) and jT (5): 4.5.
    assert run(backend, "satisfaction_after_failure") == [
        {
            "failed_channel": "chatbot",
            "failed_journeys": 1,
            "rated_journeys": 1,
            "csat_after_failure": 2.0,
            "rated_journeys_without_failure": 2,
            "csat_without_failure": 4.5,
            "csat_gap": -2.5,
        }
    ]


def test_customer_touchpoints_is_the_current_placement_of_one_profile(backend: Backend) -> None:
    rows = run(backend, "customer_touchpoints", profile="P")
    assert [(r["event_id"], r["on_channel"], r["did"], r["journey"]) for r in rows] == [
        ("p1", "web", "product_view", "jP"),
        ("p2", "web", "purchase", "jP"),
        ("p3", "store", "return_requested", "jP2"),
        ("p4", "email", "feedback", "jP2"),
    ]
    assert (rows[1]["order_id"], rows[1]["order_value"], rows[3]["score"]) == ("o1", 100.0, 4)
    # p2 was first placed with P-old: that id is stale, nothing is its own any more.
    assert run(backend, "customer_touchpoints", profile="P-old") == []
