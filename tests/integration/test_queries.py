"""The analysts' query library on the real engine (chDB), against a small data set whose answers
are worked out by hand in each test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from parcours.schemas.errors import QueryError
from parcours.schemas.settings import load_settings
from parcours.sinks.backend import Backend, open_backend, rows_of
from parcours.sinks.library import load, names
from parcours.sinks.migrations import migrate

pytestmark = pytest.mark.integration

DAY = "2026-11-02"


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
        "version": 1,
    } | more


TOUCHPOINTS = [
    # A: a web journey from product view to purchase (100).
    _tp("a1", "A", "jA", "web", "product_view", "10:00"),
    _tp("a2", "A", "jA", "web", "add_to_cart", "10:05"),
    _tp("a3", "A", "jA", "web", "checkout_started", "10:10"),
    _tp("a4", "A", "jA", "web", "purchase", "10:20", order_value=100.0),
    # B: the brand's e-mail, a web view, an app cart, a store purchase (50).
    _tp("b1", "B", "jB", "email", "message_sent", "09:00"),
    _tp("b2", "B", "jB", "web", "product_view", "10:00"),
    _tp("b3", "B", "jB", "mobile_app", "add_to_cart", "10:30"),
    _tp("b4", "B", "jB", "store", "purchase", "11:00", order_value=50.0),
    # C: a chatbot case about billing taken up by phone, then the app; c5 and c4 happen in the
    # same millisecond and c5 is written first: the event id decides that c4 comes first.
    _tp(
        "c1",
        "C",
        "jC",
        "chatbot",
        "contact_started",
        "12:00",
        case_id="k1",
        contact_topic="billing",
    ),
    _tp(
        "c2", "C", "jC", "chatbot", "contact_ended", "12:05", case_id="k1", contact_topic="billing"
    ),
    _tp(
        "c3", "C", "jC", "phone", "contact_started", "12:20", case_id="k1", contact_topic="billing"
    ),
    _tp("c5", "C", "jC", "mobile_app", "add_to_cart", "12:30"),
    _tp("c4", "C", "jC", "mobile_app", "product_view", "12:30"),
    # D: one live chat about sizing.
    _tp(
        "d1",
        "D",
        "jD",
        "live_chat",
        "contact_started",
        "13:00",
        case_id="k2",
        contact_topic="sizing",
    ),
    _tp(
        "d2", "D", "jD", "live_chat", "contact_ended", "13:10", case_id="k2", contact_topic="sizing"
    ),
    # An older placement of a1 in another journey: the newer version wins.
    _tp("a1", "A", "jOld", "web", "product_view", "10:00") | {"version": 0},
]


def _journey(
    jid: str,
    profile: str,
    start: str,
    last: str,
    status: str,
    channels: list[str],
    touchpoints: int,
    pivots: int,
    version: int = 2,
) -> dict[str, Any]:
    return {
        "journey_id": jid,
        "profile_id": profile,
        "started_at": f"{DAY} {start}:00.000",
        "last_at": f"{DAY} {last}:00.000",
        "status": status,
        "channels": channels,
        "touchpoints": touchpoints,
        "pivots": pivots,
        "version": version,
    }


JOURNEYS = [
    _journey("jA", "A", "10:00", "10:20", "converted", ["web"], 4, 0),
    _journey("jB", "B", "09:00", "11:00", "converted", ["web", "mobile_app", "store"], 4, 2),
    _journey("jC", "C", "12:00", "12:30", "open", ["chatbot", "phone", "mobile_app"], 5, 2),
    _journey("jC", "C", "12:00", "12:05", "open", ["chatbot"], 2, 0, version=1),
    _journey("jD", "D", "13:00", "13:10", "expired", ["live_chat"], 2, 0),
    _journey("jX", "X", "08:00", "08:30", "superseded", ["web", "sms", "push"], 3, 2),
]


def _pivot(
    event_id: str,
    journey: str,
    src: str,
    dst: str,
    at: str,
    failed: bool = False,
    version: int = 2,
    retracted: int = 0,
) -> dict[str, Any]:
    return {
        "journey_id": journey,
        "profile_id": journey[1:],
        "occurred_at": f"{DAY} {at}:00.000",
        "from_channel": src,
        "to_channel": dst,
        "gap_seconds": 60.0,
        "failure_driven": failed,
        "failure_event_id": "c2" if failed else "",
        "event_id": event_id,
        "version": version,
        "retracted": retracted,
    }


PIVOTS = [
    _pivot("b3", "jB", "web", "mobile_app", "10:30"),
    _pivot("b4", "jB", "mobile_app", "store", "11:00"),
    _pivot("c3", "jC", "chatbot", "phone", "12:20", failed=True),
    _pivot("c3", "jC", "chatbot", "phone", "12:20", failed=False, version=1),
    _pivot("c4", "jC", "phone", "mobile_app", "12:30"),
    _pivot("a3", "jA", "web", "phone", "10:10", retracted=1, version=3),
]


def _dropoff(
    anchor: str,
    kind: str,
    value: float,
    followup: str,
    recovered: float | None = None,
    version: int = 2,
) -> dict[str, Any]:
    return {
        "journey_id": "j",
        "profile_id": "p",
        "kind": kind,
        "anchor_event_id": anchor,
        "deadline": f"{DAY} 15:00:00.000",
        "value": value,
        "currency": "EUR",
        "followup_id": followup,
        "anchor_channel": "web",
        "recovered": recovered is not None,
        "recovered_value": recovered,
        "version": version,
    }


DROPOFFS = [
    _dropoff("x1", "abandoned_cart", 80.0, "f1", recovered=80.0),
    _dropoff("x1", "abandoned_cart", 80.0, "f1", version=1),
    _dropoff("x2", "abandoned_cart", 20.0, "f2"),
    _dropoff("x3", "abandoned_checkout", 40.0, "f3"),
]
FOLLOWUPS = [
    {
        "followup_id": "f1",
        "profile_id": "p",
        "kind": "abandoned_cart",
        "channel": "email",
        "status": "scheduled",
        "send_at": f"{DAY} 15:00:00.000",
        "version": 2,
    },
    {
        "followup_id": "f2",
        "profile_id": "p",
        "kind": "abandoned_cart",
        "status": "suppressed",
        "reason": "no_consent",
        "version": 2,
    },
    {
        "followup_id": "f3",
        "profile_id": "p",
        "kind": "abandoned_checkout",
        "channel": "sms",
        "status": "cancelled",
        "reason": "purchased",
        "version": 2,
    },
    {
        "followup_id": "f3",
        "profile_id": "p",
        "kind": "abandoned_checkout",
        "channel": "sms",
        "status": "scheduled",
        "version": 1,
    },
]


@pytest.fixture(scope="module")
def backend(
    server_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """chDB, or the ClickHouse server of the settings or of testcontainers: the same DDL and the
    same query texts run unchanged on both."""
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("queries"),
        clickhouse_database=f"queries_{uuid.uuid4().hex[:8]}",
        **server_settings,
    )
    engine = open_backend(settings)
    try:
        migrate(engine)
        for table, rows in (
            ("touchpoint_versions", TOUCHPOINTS),
            ("journey_versions", JOURNEYS),
            ("pivot_versions", PIVOTS),
            ("dropoff_versions", DROPOFFS),
            ("followup_versions", FOLLOWUPS),
        ):
            for row in rows:  # one block per row: several parts, as the sink writes them
                engine.insert(table, [row])
        yield engine
    finally:
        engine.close()


def run(backend: Backend, name: str, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = rows_of(backend.query(load(name).render(backend.database, params)))
    return rows


def test_every_query_in_the_library_says_what_it_answers() -> None:
    assert set(names()) >= {
        "conversion_funnel",
        "pivot_matrix",
        "failing_channels",
        "abandonment_recovery",
        "time_to_convert",
        "attribution",
        "repeat_contacts",
        "multichannel_journeys",
    }
    for name in names():
        assert load(name).question.endswith("?"), name


def test_conversion_funnel_by_channel_breaks_equal_times_by_event_id(backend: Backend) -> None:
    # web: A goes all the way, B only viewed. app: C viewed then added (same millisecond: c4 < c5);
    # B added to cart in the app without viewing there, so B has no app level.
    assert run(backend, "conversion_funnel") == [
        {
            "channel": "web",
            "viewed": 2,
            "added_to_cart": 1,
            "started_checkout": 1,
            "purchased": 1,
            "view_to_purchase": 0.5,
        },
        {
            "channel": "mobile_app",
            "viewed": 1,
            "added_to_cart": 1,
            "started_checkout": 0,
            "purchased": 0,
            "view_to_purchase": 0.0,
        },
    ]


def test_conversion_funnel_window_leaves_out_steps_after_it(backend: Backend) -> None:
    # A's purchase comes 20 minutes after the view: outside a 0-hour window only the view counts.
    web = run(backend, "conversion_funnel", window_hours="0")[0]
    assert (web["channel"], web["viewed"], web["purchased"]) == ("web", 2, 0)


def test_pivot_matrix_uses_the_latest_version_and_leaves_out_retracted_pivots(
    backend: Backend,
) -> None:
    assert run(backend, "pivot_matrix") == [
        {
            "from_channel": "chatbot",
            "to_channel": "phone",
            "pivots": 1,
            "failure_driven_pivots": 1,
            "failure_driven_share": 1.0,
        },
        {
            "from_channel": "mobile_app",
            "to_channel": "store",
            "pivots": 1,
            "failure_driven_pivots": 0,
            "failure_driven_share": 0.0,
        },
        {
            "from_channel": "phone",
            "to_channel": "mobile_app",
            "pivots": 1,
            "failure_driven_pivots": 0,
            "failure_driven_share": 0.0,
        },
        {
            "from_channel": "web",
            "to_channel": "mobile_app",
            "pivots": 1,
            "failure_driven_pivots": 0,
            "failure_driven_share": 0.0,
        },
    ]
    assert run(backend, "pivot_matrix", **{"from": "2026-11-03"}) == []


def test_failing_channels_is_failure_driven_pivots_out_per_contact(backend: Backend) -> None:
    # The chatbot had 2 customer touchpoints (c1, c2) and 1 failure-driven pivot out.
    assert run(backend, "failing_channels") == [
        {"channel": "chatbot", "contacts": 2, "failure_driven_out": 1, "failures_per_contact": 0.5}
    ]


def test_abandonment_and_recovery_with_recovered_revenue(backend: Backend) -> None:
    assert run(backend, "abandonment_recovery") == [
        {
            "kind": "abandoned_cart",
            "dropoffs": 2,
            "followups_sent": 1,
            "recovered": 1,
            "recovery_rate": 1.0,
            "value_abandoned": 100.0,
            "revenue_recovered": 80.0,
        },
        {
            "kind": "abandoned_checkout",
            "dropoffs": 1,
            "followups_sent": 0,
            "recovered": 0,
            "recovery_rate": 0.0,
            "value_abandoned": 40.0,
            "revenue_recovered": 0.0,
        },
    ]


def test_time_to_convert_by_number_of_channels(backend: Backend) -> None:
    # jA: 20 minutes on 1 channel; jB: 120 minutes on 3. Open, expired and superseded are out.
    assert run(backend, "time_to_convert") == [
        {
            "channels": 1,
            "converted_journeys": 1,
            "median_minutes": 20.0,
            "p90_minutes": 20.0,
            "avg_touchpoints": 4.0,
        },
        {
            "channels": 3,
            "converted_journeys": 1,
            "median_minutes": 120.0,
            "p90_minutes": 120.0,
            "avg_touchpoints": 4.0,
        },
    ]


def test_first_and_last_touch_attribution_skip_brand_messages(backend: Backend) -> None:
    # jA (100): first and last touch web. jB (50): first touch web (the brand's e-mail does not
    # count), last touch before the purchase the app.
    assert run(backend, "attribution") == [
        {
            "channel": "web",
            "first_touch_revenue": 150.0,
            "last_touch_revenue": 100.0,
            "first_touch_journeys": 2,
            "last_touch_journeys": 1,
        },
        {
            "channel": "mobile_app",
            "first_touch_revenue": 0.0,
            "last_touch_revenue": 50.0,
            "first_touch_journeys": 0,
            "last_touch_journeys": 1,
        },
    ]


def test_repeat_contacts_per_case_topic(backend: Backend) -> None:
    # k1 (billing) was raised on the chatbot and on the phone; k2 (sizing) once, in live chat.
    assert run(backend, "repeat_contacts") == [
        {
            "topic": "billing",
            "cases": 1,
            "raised_on_several_channels": 1,
            "repeat_share": 1.0,
            "contacts_per_case": 2.0,
        },
        {
            "topic": "sizing",
            "cases": 1,
            "raised_on_several_channels": 0,
            "repeat_share": 0.0,
            "contacts_per_case": 1.0,
        },
    ]


def test_journeys_with_at_least_three_channels(backend: Backend) -> None:
    # jC's latest version has 3 channels; the superseded jX does not count.
    assert run(backend, "multichannel_journeys") == [
        {
            "channel_mix": "chatbot + mobile_app + phone",
            "journeys": 1,
            "converted": 0,
            "conversion_rate": 0.0,
            "avg_pivots": 2.0,
        },
        {
            "channel_mix": "mobile_app + store + web",
            "journeys": 1,
            "converted": 1,
            "conversion_rate": 1.0,
            "avg_pivots": 2.0,
        },
    ]
    assert len(run(backend, "multichannel_journeys", min_channels="1")) == 4


def test_a_bad_parameter_is_refused_with_its_name() -> None:
    with pytest.raises(QueryError, match="parameter from='2026-13-01' is not a Date"):
        load("pivot_matrix").render("parcours", {"from": "2026-13-01"})
    with pytest.raises(QueryError, match="unknown parameter since; pivot_matrix takes from, to"):
        load("pivot_matrix").render("parcours", {"since": "2026-01-01"})
    with pytest.raises(QueryError, match="no query named 'nope'"):
        load("nope")


def test_the_daily_kpis_per_channel_count_current_rows_once(backend: Backend) -> None:
    db = backend.database
    backend.command(f"SYSTEM REFRESH VIEW {db}.kpi_daily_channel_mv")
    backend.command(f"SYSTEM WAIT VIEW {db}.kpi_daily_channel_mv")
    rows = rows_of(backend.query(f"SELECT * FROM {db}.kpi_daily_channel ORDER BY channel"))
    kpis = {row.pop("channel"): row for row in rows}
    assert {row.pop("day") for row in kpis.values()} == {DAY}
    # web: a1 (two versions, counted once), a2, a3, a4, b2; A and B; A's purchase of 100; B left
    # web for the app (the retracted web→phone pivot does not count); the three drop-offs were
    # left on the web, one recovered for 80.
    assert kpis["web"] == {
        "touchpoints": 5, "customers": 2, "conversions": 1, "revenue": 100.0,
        "pivots_out": 1, "pivots_in": 0, "failure_driven_out": 0,
        "dropoffs": 3, "followups_sent": 0, "recovered": 1, "recovered_revenue": 80.0,
    }  # fmt: skip
    assert (kpis["chatbot"]["pivots_out"], kpis["chatbot"]["failure_driven_out"]) == (1, 1)
    assert (kpis["mobile_app"]["pivots_in"], kpis["mobile_app"]["pivots_out"]) == (2, 1)
    assert (kpis["store"]["conversions"], kpis["store"]["revenue"]) == (1, 50.0)
    assert kpis["email"]["followups_sent"] == 1 and kpis["email"]["touchpoints"] == 1


def test_the_query_benchmark_generates_its_data_set_and_runs_every_query() -> None:
    from parcours.deploy.bench_queries import bench_queries

    result = bench_queries(2000, runs=1)
    rows = result["rows"]
    # 2,000 generated touchpoints plus one return per returned order and one score per rating;
    # the versions table also holds the second versions the bench writes.
    assert rows["touchpoints"] == 2000 + rows["returns"] + rows["ratings"]
    assert rows["touchpoint_versions"] > rows["touchpoints"] and rows["journeys"] == 200
    assert rows["pivots"] > 0 and rows["dropoffs"] > 0 and rows["ratings"] > 0
    assert set(names()) <= set(result["queries"])
    assert {name for name in result["queries"] if name.startswith("point: ")} == {
        "point: touchpoints of a profile",
        "point: one journey",
        "point: one touchpoint",
        "point: pivots of a journey",
    }
    assert all(figures["rows"] > 0 for figures in result["queries"].values())
