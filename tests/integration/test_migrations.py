"""Versioned DDL on the real ClickHouse engine (chDB): an older schema upgrades, twice is a no-op."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from parcours.sinks.backend import ChdbBackend, rows_of
from parcours.sinks.migrations import _statements, migrate
from parcours.sinks.profiles import read_profile

pytestmark = pytest.mark.integration


MIGRATIONS = ((1, "init"), (2, "journeys"), (3, "detections"), (4, "kpis"), (5, "retractions"))


def _apply_until(backend: ChdbBackend, last: int) -> None:
    """A database as an older parcours left it: the migrations up to ``last``, recorded."""
    backend.command("CREATE DATABASE parcours")
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
            backend.query("SELECT event_id, session_key, version, late FROM parcours.touchpoints")
        )
        assert rows == [{"event_id": "e1", "session_key": "", "version": 0, "late": False}]
        engine = rows_of(
            backend.query(
                "SELECT engine_full FROM system.tables "
                "WHERE database = 'parcours' AND name = 'touchpoints'"
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

        assert migrate(backend) == [3, 4, 5, 6]
        assert migrate(backend) == []

        rows = rows_of(
            backend.query(
                "SELECT event_id, from_channel, failure_driven, version, retracted "
                "FROM parcours.pivots_current"
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
        assert engines["pivots"].startswith("ReplacingMergeTree(version, retracted)")
        assert engines["dropoffs"].startswith("ReplacingMergeTree(version)")
        assert engines["followups"].startswith("ReplacingMergeTree(version)")
        assert "kpi_daily_channel_mv" in engines and "handoffs" in engines
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
        assert migrate(backend) == [5, 6]
        backend.command(
            "INSERT INTO parcours.dropoffs (journey_id, profile_id, kind, anchor_event_id, "
            "deadline, followup_id, version, retracted) VALUES "
            "('j2', 'p2', 'abandoned_cart', 'e2', '2026-11-02 11:00:00', 'f2', 2, 1)"
        )
        backend.command(
            "INSERT INTO parcours.followups (followup_id, profile_id, kind, status, reason, "
            "version) VALUES ('f2', 'p2', 'abandoned_cart', 'cancelled', 'retracted', 2)"
        )
        dropoffs = rows_of(
            backend.query("SELECT anchor_event_id, retracted FROM parcours.dropoffs_current")
        )
        followups = rows_of(
            backend.query("SELECT followup_id, status FROM parcours.followups_current")
        )
        assert dropoffs == [{"anchor_event_id": "e1", "retracted": 0}]
        assert followups == [{"followup_id": "f1", "status": "scheduled"}]
    finally:
        backend.close()


def test_a_005_database_gets_the_profile_read_model_of_its_rows(tmp_path: Path) -> None:
    """006 copies what was written before it into the profile-keyed tables, so the profile API
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
        assert migrate(backend) == [6]
        profile = read_profile(backend, "crm_id", "C1")
        assert profile is not None and profile["profile_id"] == "p1"
        assert [e["event_id"] for e in profile["recent"]] == ["e1"]
        assert [f["action"] for f in profile["failures"]] == ["chatbot_fallback"]
        assert [j["journey_id"] for j in profile["journeys"]] == ["j1"]
        assert [(f["followup_id"], f["pending"]) for f in profile["followups"]] == [("f1", False)]
    finally:
        backend.close()
