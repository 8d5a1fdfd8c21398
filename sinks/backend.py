"""One interface to ClickHouse, two backends: chDB in-process, or any server over HTTP."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson
from parcours.schemas.errors import RowsRefused, SinkError
from parcours.schemas.settings import Settings

FORMATS = {"json": "JSONEachRow", "csv": "CSVWithNames", "table": "JSONCompact"}

# ClickHouse error codes that mean "these rows are wrong": the same rows would be refused again.
# Every other failure (no answer, a time-out, too many parts, memory, an unknown column after a
# missed migration, ...) is worth retrying: the sink waits rather than dead-letter good rows.
DATA_ERRORS = {
    6: "CANNOT_PARSE_TEXT",
    25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    131: "TOO_LARGE_STRING_SIZE",
    190: "SIZES_OF_ARRAYS_DONT_MATCH",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    377: "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
    469: "VIOLATED_CONSTRAINT",
    691: "UNKNOWN_ELEMENT_OF_ENUM",
}
_CODE = re.compile(r"\bCode: (\d+)\.")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code of a failure: clickhouse-connect's DatabaseError and chDB's
    ChdbError both carry the server's ``Code: N.`` text; a network failure carries none."""
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def insert_error(exc: BaseException, table: str, backend: str) -> SinkError:
    """RowsRefused when ClickHouse refused the data, SinkError (retry) for anything else."""
    code = error_code(exc)
    kind = RowsRefused if code in DATA_ERRORS else SinkError
    return kind(str(exc).strip(), backend=backend, table=table, code=code)


def dedup_token(table: str, body: str) -> str:
    """The same rows give the same token: an insert retried after a time-out that had in fact
    landed is dropped by ClickHouse (``insert_deduplication_token``, within the tables'
    ``non_replicated_deduplication_window``) instead of written twice."""
    return hashlib.sha256(f"{table}\n{body}".encode()).hexdigest()


class Backend(Protocol):
    database: str

    def command(self, sql: str) -> None: ...

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None: ...

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes: ...

    def close(self) -> None: ...


def json_lines(rows: Iterable[dict[str, Any]]) -> str:
    """JSONEachRow. orjson: the standard library's encoder was a tenth of the sink's CPU. A row's
    datetimes are already ClickHouse literals (``rows.ts``); anything else is written as text."""
    return b"\n".join(orjson.dumps(row, default=str, option=_ROW) for row in rows).decode()


_ROW = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def rows_of(raw: bytes) -> list[dict[str, Any]]:
    """Parse a JSONEachRow answer."""
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


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
        if not rows:
            return
        # An explicit column list is what makes ClickHouse compute DEFAULTs from EPHEMERALs.
        columns = ", ".join(rows[0])
        body = json_lines(rows)
        sql = (
            f"INSERT INTO {self.database}.{table} ({columns}) "
            f"SETTINGS insert_deduplication_token = '{dedup_token(table, body)}' "
            f"FORMAT JSONEachRow\n{body}"
        )
        with self._lock:
            try:
                self._session.query(sql, "TabSeparated")  # type: ignore[no-untyped-call]
            except Exception as exc:
                raise insert_error(exc, table, "chdb") from exc

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
        from clickhouse_connect.driver.exceptions import OperationalError

        if not rows:
            return
        body = json_lines(rows)
        try:
            self._client.raw_insert(
                f"{self.database}.{table}",
                column_names=list(rows[0]),
                insert_block=body,
                settings={"insert_deduplication_token": dedup_token(table, body)},
                fmt="JSONEachRow",
            )
        except OperationalError as exc:  # no answer, a time-out: never the rows' fault
            raise SinkError(str(exc).strip(), backend="http", table=table) from exc
        except Exception as exc:
            raise insert_error(exc, table, "http") from exc

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
