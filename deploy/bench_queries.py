"""``parcours bench-queries``: the analyst query library timed on a generated data set.

The rows are generated inside ClickHouse (``numbers()``), not through the pipeline, so that a
million touchpoints take seconds: 10 touchpoints per customer over 30 days, one journey per
customer, a pivot at every channel change, a drop-off for one cart in seven and its follow-up.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from parcours.deploy.bench import machine
from parcours.schemas.errors import QueryError
from parcours.sinks.backend import Backend, ChdbBackend, rows_of
from parcours.sinks.library import load, names
from parcours.sinks.migrations import migrate
from parcours.sinks.profiles import read_profile
from parcours.sinks.sqlserver import RemoteBackend, SqlServer

CHANNELS = "['web','mobile_app','store','email','chatbot','phone','live_chat','sms']"
STEPS = (
    "['page_view','product_view','product_view','add_to_cart','contact_started',"
    "'contact_ended','checkout_started','product_view','add_to_cart','purchase']"
)


def _fill(db: Backend, touchpoints: int) -> None:
    customers = max(1, touchpoints // 10)
    d = db.database
    db.command(
        f"INSERT INTO {d}.touchpoint_versions (event_id, profile_id, journey_id, channel, action, "
        "occurred_at, routing_key, produced_at, kafka_partition, kafka_offset, order_value, "
        "case_id, contact_topic, contact_outcome, version, order_id, currency, identities) "
        "SELECT 'e' || toString(number), 'p' || toString(c), 'j' || toString(c), "
        f"{CHANNELS}[1 + (cityHash64(c, intDiv(step, 3)) % 8)], {STEPS}[1 + step], "
        "toDateTime64('2026-10-01 00:00:00', 3, 'UTC') + toIntervalSecond(c % 2592000) "
        "+ toIntervalSecond(step * 240 + number % 7), 'crm_id:' || toString(c), "
        "now64(3), 0, number, if(step = 9, 20 + c % 180, NULL), "
        "if(step IN (4, 5), 'case-' || toString(c), ''), "
        "if(step IN (4, 5), ['billing','delivery','sizing','returns'][1 + c % 4], ''), "
        "if(step = 5, ['resolved','unresolved','abandoned'][1 + c % 3], ''), 1, "
        "if(step = 9, 'o' || toString(c), ''), if(step = 9, 'EUR', ''), "
        "map('crm_id', toString(c), 'anonymous_id', 'ck-' || toString(c)) "
        f"FROM (SELECT number, number % {customers} AS c, intDiv(number, {customers}) % 10 AS step "
        f"FROM numbers({touchpoints}))"
    )
    db.command(
        f"INSERT INTO {d}.journey_versions (journey_id, profile_id, started_at, last_at, status, "
        "channels, touchpoints, pivots, version) "
        "SELECT journey_id, any(profile_id), min(occurred_at), max(occurred_at), "
        "if(countIf(action = 'purchase') > 0 AND c % 3 != 0, 'converted', 'open'), "
        "groupUniqArray(channel), count(), 0, 1 "
        f"FROM (SELECT *, toUInt64(substring(profile_id, 2)) AS c FROM {d}.touchpoint_versions) "
        "GROUP BY journey_id, c"
    )
    db.command(
        f"INSERT INTO {d}.pivot_versions (journey_id, profile_id, occurred_at, from_channel, to_channel, "
        "gap_seconds, failure_driven, failure_event_id, event_id, version) "
        "SELECT journey_id, profile_id, occurred_at, previous, channel, 240, "
        "previous_action IN ('contact_ended', 'chatbot_fallback'), '', event_id, 1 FROM ("
        "SELECT *, lagInFrame(channel) OVER w AS previous, lagInFrame(action) OVER w AS previous_action, "
        "row_number() OVER w AS n "
        f"FROM {d}.touchpoint_versions WINDOW w AS (PARTITION BY profile_id ORDER BY occurred_at, event_id "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) WHERE n > 1 AND previous != channel"
    )
    db.command(
        f"INSERT INTO {d}.dropoff_versions (journey_id, profile_id, kind, anchor_event_id, deadline, "
        "value, currency, anchor_channel, followup_id, recovered, recovered_value, version) "
        "SELECT journey_id, profile_id, 'abandoned_cart', event_id, occurred_at + toIntervalHour(1), "
        "50, 'EUR', channel, 'f' || event_id, cityHash64(event_id) % 5 = 0, "
        "if(cityHash64(event_id) % 5 = 0, 50, NULL), 1 "
        f"FROM {d}.touchpoint_versions WHERE action = 'add_to_cart' AND cityHash64(event_id) % 7 = 0"
    )
    db.command(
        f"INSERT INTO {d}.followup_versions (followup_id, profile_id, kind, channel, status, reason, "
        "send_at, anchor_event_id, version) "
        "SELECT followup_id, profile_id, kind, ['email','sms','push'][1 + cityHash64(followup_id) % 3], "
        "if(cityHash64(followup_id) % 4 = 0, 'suppressed', 'scheduled'), '', deadline, "
        f"anchor_event_id, 1 FROM {d}.dropoff_versions"
    )


def _aftercare(db: Backend) -> None:
    """Returns (one order in eight, in a store or on the web), scores (CSAT on one order in five,
    on one case in six, NPS on one order in seven), and a second version of one touchpoint in ten
    (what a merge or a crash re-send leaves), so that the contract's views have versions to drop."""
    d = db.database
    columns = (
        "event_id, profile_id, journey_id, channel, action, occurred_at, routing_key, "
        "produced_at, kafka_partition, kafka_offset, version, order_id, order_value, currency, "
        "feedback_scale, feedback_score, feedback_order_id, feedback_case_id"
    )
    db.command(
        f"INSERT INTO {d}.touchpoint_versions ({columns}) "
        "SELECT 'r' || event_id, profile_id, journey_id, ['store', 'web'][1 + cityHash64(event_id) % 2], "
        "'return_requested', occurred_at + toIntervalDay(2), routing_key, now64(3), 0, 0, 1, "
        "order_id, order_value, 'EUR', '', NULL, '', '' "
        f"FROM {d}.touchpoint_versions WHERE action = 'purchase' AND cityHash64(order_id) % 8 = 0"
    )
    db.command(
        f"INSERT INTO {d}.touchpoint_versions ({columns}) "
        "SELECT 'f' || event_id, profile_id, journey_id, 'email', 'feedback', "
        "occurred_at + toIntervalHour(3), routing_key, now64(3), 0, 0, 1, '', NULL, '', "
        "if(h % 7 = 0, 'nps', 'csat'), if(h % 7 = 0, h % 11, 1 + h % 5), order_id, '' "
        f"FROM (SELECT *, cityHash64(order_id) AS h FROM {d}.touchpoint_versions) "
        "WHERE action = 'purchase' AND (h % 5 = 0 OR h % 7 = 0)"
    )
    db.command(
        f"INSERT INTO {d}.touchpoint_versions ({columns}) "
        "SELECT 'f' || event_id, profile_id, journey_id, 'sms', 'feedback', "
        "occurred_at + toIntervalMinute(10), routing_key, now64(3), 0, 0, 1, '', NULL, '', "
        "'csat', 1 + cityHash64(case_id) % 5, '', case_id "
        f"FROM {d}.touchpoint_versions "
        "WHERE action = 'contact_ended' AND cityHash64(case_id) % 6 = 0"
    )
    db.command(
        f"INSERT INTO {d}.touchpoint_versions SELECT * REPLACE (version + 1 AS version) "
        f"FROM {d}.touchpoint_versions WHERE kafka_offset % 10 = 0 AND action != 'feedback'"
    )


def _timed(db: Backend, sql: str, runs: int) -> tuple[float, int]:
    seconds, rows = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = len(rows_of(db.query(sql)))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), rows


CONTRACT = ("touchpoints", "journeys", "pivots", "dropoffs", "followups")


def _middle(touchpoints: int) -> int:
    """A customer in the middle of the data set."""
    return max(1, touchpoints // 10) // 2


def _point_queries(touchpoints: int) -> dict[str, str]:
    """What a profile page or an agent's desktop asks, on the contract's names (bare, as analysts
    type them): one customer's touchpoints, one journey, one event, one journey's pivots; and
    whole-table counts, which read every version."""
    c = _middle(touchpoints)
    return {
        "point: touchpoints of a profile": f"SELECT event_id, channel, action, occurred_at "
        f"FROM touchpoints WHERE profile_id = 'p{c}' ORDER BY occurred_at, event_id",
        "point: one journey": f"SELECT * FROM journeys WHERE journey_id = 'j{c}'",
        "point: one touchpoint": f"SELECT * FROM touchpoints WHERE event_id = 'e{c}'",
        "point: pivots of a journey": f"SELECT * FROM pivots WHERE journey_id = 'j{c}'",
        "count: touchpoints": "SELECT count() FROM touchpoints",
        "count: pivots": "SELECT count() FROM pivots",
    }


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


def _lookups(db: Backend, customers: list[int]) -> list[float]:
    seconds = []
    for c in customers:
        started = time.perf_counter()
        found = read_profile(db, "crm_id", str(c))
        seconds.append(time.perf_counter() - started)
        if found is None or len(found["recent"]) != 10:
            raise QueryError("the profile of a generated customer is incomplete", crm_id=c)
    return seconds


def bench_profiles(touchpoints: int, lookups: int) -> dict[str, Any]:
    """The profile API's reads for random customers: in the process that holds chDB, and through
    the SQL endpoint the sink serves (the collector's path on the embedded stack)."""
    customers = max(1, touchpoints // 10)
    rng = random.Random(5)
    chosen = [rng.randrange(customers) for _ in range(lookups)]
    with tempfile.TemporaryDirectory(prefix="parcours-profiles-") as tmp:
        db = ChdbBackend(Path(tmp) / "clickhouse", "parcours")
        try:
            migrate(db)
            _fill(db, touchpoints)
            db.command("OPTIMIZE TABLE parcours.profile_touchpoints FINAL")
            db.command("OPTIMIZE TABLE parcours.profile_identities FINAL")
            _lookups(db, chosen[:20])  # warm-up
            direct = _lookups(db, chosen)
            with SqlServer(db, Path(tmp)) as server:
                endpoint = _lookups(RemoteBackend(server.url, db.database), chosen)
        finally:
            db.close()
    return {
        "machine": machine(),
        "touchpoints": touchpoints,
        "profiles": customers,
        "lookups": lookups,
        "in_process": _percentiles(direct),
        "via_sql_endpoint": _percentiles(endpoint),
    }


def bench_queries(touchpoints: int, runs: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="parcours-queries-") as tmp:
        db = ChdbBackend(Path(tmp) / "clickhouse", "parcours")
        try:
            migrate(db)
            started = time.perf_counter()
            _fill(db, touchpoints)
            _aftercare(db)
            fill_seconds = time.perf_counter() - started
            counts = {
                t: rows_of(db.query(f"SELECT count() AS n FROM parcours.{t}"))[0]["n"]
                for t in (*CONTRACT, "touchpoint_versions", "ratings", "returns")
            }
            queries = {}
            middle = {"customer_touchpoints": {"profile": f"p{_middle(touchpoints)}"}}
            for name in names():
                sql = load(name).render(db.database, middle.get(name))
                seconds, rows = _timed(db, sql, runs)
                queries[name] = {"median_ms": round(seconds * 1000, 1), "rows": rows}
            for name, sql in _point_queries(touchpoints).items():
                seconds, rows = _timed(db, sql, runs)
                queries[name] = {"median_ms": round(seconds * 1000, 1), "rows": rows}
            started = time.perf_counter()
            db.command("SYSTEM REFRESH VIEW parcours.kpi_daily_channel_mv")
            db.command("SYSTEM WAIT VIEW parcours.kpi_daily_channel_mv")
            kpi_refresh = time.perf_counter() - started
        finally:
            db.close()
    return {
        "machine": machine(),
        "rows": counts,
        "generate_seconds": round(fill_seconds, 1),
        "queries": queries,
        "kpi_refresh_ms": round(kpi_refresh * 1000, 1),
    }
