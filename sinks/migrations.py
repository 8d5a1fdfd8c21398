"""Versioned DDL in ``sinks/ddl/NNN_name.sql``, applied idempotently at start-up on any backend."""

from __future__ import annotations

import re
from importlib import resources

from parcours.sinks.backend import Backend, rows_of


def _statements(text: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def migrate(backend: Backend) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    db = backend.database
    backend.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    backend.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {
        row["version"]
        for row in rows_of(backend.query(f"SELECT version FROM {db}.schema_migrations"))
    }
    applied = []
    folder = resources.files("parcours.sinks").joinpath("ddl")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if match is None or int(match.group(1)) in done:
            continue
        for statement in _statements(entry.read_text()):
            backend.command(statement.replace("{db}", db))
        version, name = int(match.group(1)), match.group(2)
        backend.insert("schema_migrations", [{"version": version, "name": name}])
        applied.append(version)
    return applied
