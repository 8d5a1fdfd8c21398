"""Versioned DDL on the real ClickHouse engine (chDB): an older schema upgrades, twice is a no-op."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from parcours.schemas.errors import RowsRefused
from parcours.sinks.backend import ChdbBackend, rows_of
from parcours.sinks.migrations import _statements, migrate
from parcours.sinks.profiles import read_profile

pytestmark = pytest.mark.integration


MIGRATIONS = (
    (1, "init"),
    (2, "journeys"),
    (3, "detections"),
    (4, "kpis"),
    (5, "retractions"),
    (6, "constraints"),
    (7, "current_truth"),
    (8, "profiles"),
)


def _apply_until(backend: ChdbBackend, last: int) -> None:
    """A database as an older parcours left it: the migrations up to ``last``, recorded."""
    backend.command("CREATE DATABASE IF NOT EXISTS parcours")
    backend.command(
        "CREATE TABLE parcours.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    for version, name in MIGRATIONS[:last]:
        text = resources.files("parcours.sinks").joinpath(f"ddl/00{version}_{name}.sql")
        for statement in _statements(text.read_text()):
            backend.command(statement.replace("{db}", "parcours"))
        backend.insert("schema_migrations", [{"version": version, "name": name}])


def test_a_001_database_with_rows_upgrades_to_versioned_touchpoints(tmp_path: Path) -> None:
    backend = ChdbBackend(tmp_path / "clickhouse", "parcours")
    try:
        _apply_until(backend, 1)
        backend.command(
            "INSERT INTO parcours.touchpoints (event_id, channel, action, occurred_at, "
            "routing_key, produced_at, kafka_partition, kafka_offset) VALUES "
            "('e1', 'web', 'page_view', '2026-11-02 10:00:00', 'anonymous_id:a', "
            "'2026-11-02 10:00:00', 0, 1)"
        )

        assert 2 in migrate(backend)
        assert migrate(backend) == []

        rows = rows_of(
            backend.query(
                "SELECT event_id, session_key, version, late FROM parcours.touchpoint_versions"
            )
        )
        assert rows == [{"event_id": "e1", "session_key": "", "version": 0, "late": False}]
        engine = rows_of(
            backend.query(
                "SELECT engine_full FROM system.tables "
                "WHERE database = 'parcours' AND name = 'touchpoint_versions'"
            )
        )[0]["engine_full"]
        assert engine.startswith("ReplacingMergeTree(version)")
    finally:
        backend.close()


def test_a_002_database_with_detections_upgrades_to_versioned_tables_and_kpis(
    tmp_path: Path,
) -> None:
    backend = ChdbBackend(tmp_path / "clickhouse", "parcours")
    try:
        _apply_until(backend, 2)
        backend.command(
            "INSERT INTO parcours.pivots (journey_id, profile_id, occurred_at, from_channel, "
            "to_channel, gap_seconds, failure_driven, failure_event_id, event_id) VALUES "
            "('j1', 'p1', '2026-11-02 10:00:00', 'chatbot', 'phone', 60, true, 'e0', 'e1')"
        )

        assert migrate(backend) == [3, 4, 5, 6, 7, 8, 9]
        assert migrate(backend) == []

        rows = rows_of(
            backend.query(
                "SELECT event_id, from_channel, failure_driven, version, retracted "
                "FROM parcours.pivots"
            )
        )
        assert rows == [
            {
                "event_id": "e1",
                "from_channel": "chatbot",
                "failure_driven": True,
                "version": 0,
                "retracted": 0,
            }
        ]
        engines = {
            row["name"]: row["engine_full"]
            for row in rows_of(
                backend.query(
                    "SELECT name, engine_full FROM system.tables WHERE database = 'parcours'"
                )
            )
        }
        assert engines["pivot_versions"].startswith("ReplacingMergeTree(version, retracted)")
        assert engines["dropoff_versions"].startswith("ReplacingMergeTree(version)")
        assert engines["followup_versions"].startswith("ReplacingMergeTree(version)")
        assert "kpi_daily_channel_mv" in engines and "handoff_versions" in engines
    finally:
        backend.close()


def test_a_004_database_keeps_its_dropoffs_and_followups_current_after_005(
    tmp_path: Path,
) -> None:
    """005 adds `dropoffs.retracted`; the current views leave retracted drop-offs and their
    follow-ups out, and keep every row written before it."""
    backend = ChdbBackend(tmp_path / "clickhouse", "parcours")
    try:
        _apply_until(backend, 4)
        backend.command(
            "INSERT INTO parcours.dropoffs (journey_id, profile_id, kind, anchor_event_id, "
            "deadline, followup_id, version) VALUES "
            "('j1', 'p1', 'abandoned_cart', 'e1', '2026-11-02 11:00:00', 'f1', 1), "
            "('j2', 'p2', 'abandoned_cart', 'e2', '2026-11-02 11:00:00', 'f2', 1)"
        )
        backend.command(
            "INSERT INTO parcours.followups (followup_id, profile_id, kind, status, reason, "
            "version) VALUES ('f1', 'p1', 'abandoned_cart', 'scheduled', '', 1), "
            "('f2', 'p2', 'abandoned_cart', 'scheduled', '', 1)"
        )
        assert migrate(backend) == [5, 6, 7, 8, 9]
        backend.command(
            "INSERT INTO parcours.dropoff_versions (journey_id, profile_id, kind, anchor_event_id, "
            "deadline, followup_id, version, retracted) VALUES "
            "('j2', 'p2', 'abandoned_cart', 'e2', '2026-11-02 11:00:00', 'f2', 2, 1)"
        )
        backend.command(
            "INSERT INTO parcours.followup_versions (followup_id, profile_id, kind, status, "
            "reason, version) VALUES ('f2', 'p2', 'abandoned_cart', 'cancelled', 'retracted', 2)"
        )
        dropoffs = rows_of(
            backend.query("SELECT anchor_event_id, retracted FROM parcours.dropoffs")
        )
        followups = rows_of(backend.query("SELECT followup_id, status FROM parcours.followups"))
        assert dropoffs == [{"anchor_event_id": "e1", "retracted": 0}]
        assert followups == [{"followup_id": "f1", "status": "scheduled"}]
    finally:
        backend.close()


def test_006_refuses_touchpoints_without_an_event_id_and_keeps_existing_rows(
    tmp_path: Path,
) -> None:
    """006 adds a CHECK: ClickHouse refuses a touchpoint whose dedup key is empty, which the sink
    classifies as refused rows (dead-lettered), not as an outage (retried)."""
    backend = ChdbBackend(tmp_path / "clickhouse", "parcours")
    try:
        _apply_until(backend, 5)
        row = {
            "event_id": "e1",
            "channel": "web",
            "action": "page_view",
            "occurred_at": "2026-11-02 10:00:00.000",
            "routing_key": "anonymous_id:a",
            "produced_at": "2026-11-02 10:00:00.000",
            "kafka_partition": 0,
            "kafka_offset": 1,
        }
        backend.insert("touchpoints", [row])
        assert migrate(backend) == [6, 7, 8, 9]
        # 007 renames the table to touchpoint_versions: the rule goes with it.
        with pytest.raises(RowsRefused, match="event_id_present") as refused:
            backend.insert(
                "touchpoint_versions", [row | {"event_id": "e2"}, row | {"event_id": ""}]
            )
        assert refused.value.context["code"] == 469
        backend.insert("touchpoint_versions", [row | {"event_id": "e2"}])
        rows = rows_of(backend.query("SELECT event_id FROM parcours.touchpoints ORDER BY event_id"))
        assert rows == [{"event_id": "e1"}, {"event_id": "e2"}]
    finally:
        backend.close()


OLD_ROWS = (
    # e1 placed twice: a merge moved it from profile p-old to p1 (version 2 wins).
    "INSERT INTO parcours.touchpoints (event_id, profile_id, journey_id, channel, action, "
    "occurred_at, routing_key, produced_at, kafka_partition, kafka_offset, version) VALUES "
    "('e1', 'p-old', 'j-old', 'web', 'page_view', '2026-11-02 10:00:00', 'anonymous_id:a', "
    "'2026-11-02 10:00:00', 0, 1, 1), "
    "('e1', 'p1', 'j1', 'web', 'page_view', '2026-11-02 10:00:00', 'anonymous_id:a', "
    "'2026-11-02 10:00:00', 0, 2, 2), "
    "('e2', 'p1', 'j1', 'store', 'purchase', '2026-11-02 10:30:00', 'crm_id:c', "
    "'2026-11-02 10:30:00', 0, 3, 1)",
    # j-old superseded by the merge; j1 in two versions.
    "INSERT INTO parcours.journeys (journey_id, profile_id, started_at, last_at, status, "
    "channels, touchpoints, pivots, version) VALUES "
    "('j-old', 'p-old', '2026-11-02 10:00:00', '2026-11-02 10:00:00', 'open', ['web'], 1, 0, 1), "
    "('j-old', 'p-old', '2026-11-02 10:00:00', '2026-11-02 10:00:00', 'superseded', [], 0, 0, 2), "
    "('j1', 'p1', '2026-11-02 10:30:00', '2026-11-02 10:30:00', 'converted', ['store'], 1, 0, 1), "
    "('j1', 'p1', '2026-11-02 10:00:00', '2026-11-02 10:30:00', 'converted', "
    "['web', 'store'], 2, 1, 2)",
    # The web→store pivot written twice; a pivot retracted by a re-stitch.
    "INSERT INTO parcours.pivots (journey_id, profile_id, occurred_at, from_channel, to_channel, "
    "gap_seconds, failure_driven, failure_event_id, event_id, version, retracted) VALUES "
    "('j1', 'p1', '2026-11-02 10:30:00', 'web', 'store', 1800, false, '', 'e2', 1, 0), "
    "('j1', 'p1', '2026-11-02 10:30:00', 'web', 'store', 1800, false, '', 'e2', 2, 0), "
    "('j9', 'p9', '2026-11-02 11:00:00', 'chatbot', 'phone', 60, true, 'e8', 'e9', 1, 0), "
    "('j9', 'p9', '2026-11-02 11:00:00', 'chatbot', 'phone', 60, true, 'e8', 'e9', 2, 1)",
    "INSERT INTO parcours.dropoffs (journey_id, profile_id, kind, anchor_event_id, deadline, "
    "followup_id, version, retracted) VALUES "
    "('j1', 'p1', 'abandoned_cart', 'e1', '2026-11-02 11:00:00', 'f1', 1, 0), "
    "('j1', 'p1', 'abandoned_cart', 'e1', '2026-11-02 11:00:00', 'f1', 2, 1), "
    "('j3', 'p3', 'abandoned_cart', 'e3', '2026-11-02 11:00:00', 'f3', 1, 0)",
    "INSERT INTO parcours.followups (followup_id, profile_id, kind, status, reason, version) "
    "VALUES ('f1', 'p1', 'abandoned_cart', 'scheduled', '', 1), "
    "('f1', 'p1', 'abandoned_cart', 'cancelled', 'retracted', 2), "
    "('f3', 'p3', 'abandoned_cart', 'scheduled', '', 1), "
    "('f3', 'p3', 'abandoned_cart', 'cancelled', 'purchased', 2)",
    "INSERT INTO parcours.handoffs (handoff_id, profile_id, journey_id, event_id, occurred_at, "
    "channel, from_channel, failure_driven, repeat_contacts) VALUES "
    "('h1', 'p9', 'j9', 'e9', '2026-11-02 11:00:00', 'phone', 'chatbot', true, 0), "
    "('h1', 'p9', 'j9', 'e9', '2026-11-02 11:00:00', 'phone', 'chatbot', true, 1)",
)

CURRENT_TRUTH = {
    "touchpoints": "SELECT event_id, profile_id, journey_id, version FROM {t} ORDER BY event_id",
    "journeys": "SELECT journey_id, status, channels, version FROM {t} ORDER BY journey_id",
    "pivots": "SELECT event_id, from_channel, to_channel, version FROM {t} ORDER BY event_id",
    "dropoffs": "SELECT anchor_event_id, version FROM {t} ORDER BY anchor_event_id",
    "followups": "SELECT followup_id, status, reason FROM {t} ORDER BY followup_id",
    "handoffs": "SELECT handoff_id, channel FROM {t} ORDER BY handoff_id",
}


def test_a_005_database_with_rows_gives_the_same_current_truth_under_the_contract_names(
    tmp_path: Path,
) -> None:
    """007 renames the versioned tables to `*_versions` (their rows move along) and makes the
    contract's names the views of the current truth that `*_current` (or FINAL) gave before."""
    backend = ChdbBackend(tmp_path / "clickhouse", "parcours")
    try:
        _apply_until(backend, 6)
        for statement in OLD_ROWS:
            # One part per row, as the sink writes versions in separate batches.
            head, values = statement.split(" VALUES ")
            for row in values.strip("()").split("), ("):
                backend.command(f"{head} VALUES ({row})")
        old_names = {
            "touchpoints": "parcours.touchpoints_current",
            "journeys": "parcours.journeys_current",
            "pivots": "parcours.pivots_current",
            "dropoffs": "parcours.dropoffs_current",
            "followups": "parcours.followups_current",
            "handoffs": "parcours.handoffs FINAL",
        }
        before = {
            name: rows_of(backend.query(sql.format(t=old_names[name])))
            for name, sql in CURRENT_TRUTH.items()
        }

        assert migrate(backend) == [7, 8, 9]
        assert migrate(backend) == []

        after = {
            name: rows_of(backend.query(sql.format(t=f"parcours.{name}")))
            for name, sql in CURRENT_TRUTH.items()
        }
        assert after == before
        # Worked out by hand: one row per entity in its current version.
        assert after["touchpoints"] == [
            {"event_id": "e1", "profile_id": "p1", "journey_id": "j1", "version": 2},
            {"event_id": "e2", "profile_id": "p1", "journey_id": "j1", "version": 1},
        ]
        assert [j["journey_id"] for j in after["journeys"]] == ["j1"]
        assert after["pivots"] == [
            {"event_id": "e2", "from_channel": "web", "to_channel": "store", "version": 2}
        ]
        assert after["dropoffs"] == [{"anchor_event_id": "e3", "version": 1}]
        assert after["followups"] == [
            {"followup_id": "f3", "status": "cancelled", "reason": "purchased"}
        ]
        # Every version moved with its table; the old view names are gone.
        versions = rows_of(
            backend.query(
                "SELECT (SELECT count() FROM parcours.touchpoint_versions) AS touchpoints, "
                "(SELECT count() FROM parcours.pivot_versions) AS pivots, "
                "(SELECT count() FROM parcours.handoff_versions) AS handoffs"
            )
        )
        assert versions == [{"touchpoints": 3, "pivots": 4, "handoffs": 2}]
        tables = {
            row["name"]
            for row in rows_of(
                backend.query("SELECT name FROM system.tables WHERE database = 'parcours'")
            )
        }
        assert not {name for name in tables if name.endswith("_current")}
        # Bare names resolve in the configured database.
        assert rows_of(backend.query("SELECT count() AS n FROM pivots")) == [{"n": 1}]
    finally:
        backend.close()


def test_a_005_database_gets_the_profile_read_model_of_its_rows(tmp_path: Path) -> None:
    """008 copies what was written before it into the profile-keyed tables, so the profile API
    answers for customers seen before the upgrade."""
    backend = ChdbBackend(tmp_path / "clickhouse", "parcours")
    try:
        _apply_until(backend, 5)
        backend.command(
            "INSERT INTO parcours.touchpoints (event_id, profile_id, journey_id, channel, action, "
            "occurred_at, routing_key, identities, produced_at, kafka_partition, kafka_offset, "
            "version) VALUES ('e1', 'p1', 'j1', 'chatbot', 'chatbot_fallback', "
            "'2026-11-02 10:00:00', 'crm_id:C1', map('crm_id', 'C1'), now64(3), 0, 0, 1)"
        )
        backend.command(
            "INSERT INTO parcours.journeys (journey_id, profile_id, started_at, last_at, status, "
            "channels, touchpoints, pivots, version) VALUES ('j1', 'p1', '2026-11-02 10:00:00', "
            "'2026-11-02 10:00:00', 'open', ['chatbot'], 1, 0, 1)"
        )
        backend.command(
            "INSERT INTO parcours.followups (followup_id, profile_id, kind, status, reason, "
            "send_at, version) VALUES ('f1', 'p1', 'abandoned_contact', 'scheduled', '', "
            "'2026-11-03 10:00:00', 1)"
        )
        assert migrate(backend) == [6, 7, 8, 9]
        profile = read_profile(backend, "crm_id", "C1")
        assert profile is not None and profile["profile_id"] == "p1"
        assert [e["event_id"] for e in profile["recent"]] == ["e1"]
        assert [f["action"] for f in profile["failures"]] == ["chatbot_fallback"]
        assert [j["journey_id"] for j in profile["journeys"]] == ["j1"]
        assert [(f["followup_id"], f["pending"]) for f in profile["followups"]] == [("f1", False)]
    finally:
        backend.close()


HANDOFF = (
    "INSERT INTO parcours.handoff_versions (handoff_id, profile_id, journey_id, event_id, "
    "occurred_at, channel, from_channel, failure_driven, failure_event_id, {column}) VALUES "
    "('h1', 'p9', 'j9', 'e9', '2026-11-02 11:00:00', 'phone', 'chatbot', true, '{failure}', "
    "{value})"
)


def test_a_008_database_keeps_its_handoffs_and_then_the_highest_version_wins(
    tmp_path: Path,
) -> None:
    """009 gives hand-offs a version: a re-sent one replaces the first whatever order the sink
    wrote them in, and the one that was current before the upgrade stays current."""
    backend = ChdbBackend(tmp_path / "clickhouse", "parcours")
    try:
        _apply_until(backend, 8)
        # One part per row, as the sink writes them in separate batches; e8 written last.
        for failure, at in (("e7", "2026-11-02 11:00:01.000"), ("e8", "2026-11-02 11:00:01.002")):
            backend.command(HANDOFF.format(column="ingested_at", failure=failure, value=f"'{at}'"))
        assert migrate(backend) == [9]
        assert migrate(backend) == []
        current = "SELECT handoff_id, failure_event_id FROM parcours.handoffs"
        assert rows_of(backend.query(current)) == [{"handoff_id": "h1", "failure_event_id": "e8"}]
        count = "SELECT count() AS n FROM parcours.handoff_versions"
        assert rows_of(backend.query(count)) == [{"n": 2}]
        # The sink wrote the re-sent hand-off (the higher version) before the first one.
        for failure, version in (("e6", 1_800_000_000_000_005), ("e7", 1_800_000_000_000_003)):
            backend.command(HANDOFF.format(column="version", failure=failure, value=version))
        assert rows_of(backend.query(current)) == [{"handoff_id": "h1", "failure_event_id": "e6"}]
    finally:
        backend.close()
