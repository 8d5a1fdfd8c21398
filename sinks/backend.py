"""One interface to ClickHouse, two backends: chDB in-process, or any server over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from parcours.schemas.errors import SinkError
from parcours.schemas.settings import Settings

FORMATS = {"json": "JSONEachRow", "csv": "CSVWithNames", "table": "JSONCompact"}


class Backend(Protocol):
    database: str

    def command(self, sql: str) -> None: ...

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None: ...

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes: ...

    def close(self) -> None: ...


def json_lines(rows: Iterable[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(row, separators=(",", ":"), default=str) for row in rows)


def rows_of(raw: bytes) -> list[dict[str, Any]]:
    """Parse a JSONEachRow answer."""
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


class ChdbBackend:
    """chDB (ClickHouse in-process). Only one process may open a data dir; calls are serialised."""

    def __init__(self, path: Path, database: str) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.database = database
        self._lock = threading.Lock()
        try:
            self._session = session.Session(str(path))  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise SinkError(f"chDB cannot open its data dir: {exc}", path=str(path)) from exc
        # Bare names (`FROM touchpoints`) resolve in the configured database, as on a server.
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        self.command(f"USE {database}")

    def command(self, sql: str) -> None:
        self.query(sql, "TabSeparated")

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            # An explicit column list is what makes ClickHouse compute DEFAULTs from EPHEMERALs.
            columns = ", ".join(rows[0])
            self.query(
                f"INSERT INTO {self.database}.{table} ({columns}) FORMAT JSONEachRow\n"
                + json_lines(rows)
            )

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        with self._lock:
            try:
                result = self._session.query(sql, fmt)  # type: ignore[no-untyped-call]
            except Exception as exc:
                raise SinkError(str(exc).strip(), backend="chdb") from exc
        data: bytes = result.bytes() if result is not None else b""
        return data

    def close(self) -> None:
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]


class HttpBackend:
    """Any ClickHouse server or cloud through clickhouse-connect."""

    def __init__(self, settings: Settings) -> None:
        import clickhouse_connect

        assert settings.clickhouse_url is not None
        self.database = settings.clickhouse_database
        try:
            self._client = clickhouse_connect.get_client(
                dsn=settings.clickhouse_url,
                username=settings.clickhouse_user,
                password=settings.clickhouse_password.get_secret_value(),
            )
        except Exception as exc:
            raise SinkError(f"cannot reach ClickHouse: {exc}", url=settings.clickhouse_url) from exc
        # Every request runs in the configured database, so bare names resolve there; set after
        # connecting because the migrations may still have to create it.
        self._client.database = self.database

    def command(self, sql: str) -> None:
        # CREATE DATABASE must not name a database that may not exist yet as the request's.
        creates_database = sql.lstrip().upper().startswith("CREATE DATABASE")
        try:
            self._client.command(sql, use_database=not creates_database)
        except Exception as exc:
            raise SinkError(str(exc).strip(), backend="http") from exc

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            self._client.raw_insert(
                f"{self.database}.{table}",
                column_names=list(rows[0]),
                insert_block=json_lines(rows),
                fmt="JSONEachRow",
            )
        except Exception as exc:
            raise SinkError(str(exc).strip(), backend="http", table=table) from exc

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        try:
            data: bytes = self._client.raw_query(sql, fmt=fmt)
        except Exception as exc:
            raise SinkError(str(exc).strip(), backend="http") from exc
        return data

    def close(self) -> None:
        self._client.close()


def open_backend(settings: Settings) -> Backend:
    path = settings.chdb_path
    if path is not None:
        return ChdbBackend(path, settings.clickhouse_database)
    return HttpBackend(settings)
