"""How readers (``parcours sql``, the report, tests) reach ClickHouse: directly, or through the
SQL endpoint of the sink process that holds the chDB data dir."""

from __future__ import annotations

from parcours.schemas.settings import Settings
from parcours.sinks.backend import Backend, open_backend
from parcours.sinks.migrations import migrate
from parcours.sinks.sqlserver import RemoteBackend, running_endpoint


def open_reader(settings: Settings) -> Backend:
    path = settings.chdb_path
    if path is not None:
        url = running_endpoint(settings.data_dir)
        if url is not None:
            return RemoteBackend(url, settings.clickhouse_database)
    backend = open_backend(settings)
    migrate(backend)
    return backend
