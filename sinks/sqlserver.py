"""A loopback HTTP endpoint in the process that owns chDB, so ``parcours sql`` answers while the
stack runs (chDB lets one process open a data dir at a time)."""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from parcours.schemas.errors import SinkError
from parcours.sinks.backend import Backend

ENDPOINT_FILE = "sql-endpoint.json"
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive: a reader that asks several queries in a row (the profile API) pays for
        # one connection, not one per query.
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else the body waits for the headers' ACK (40 ms)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            sql = self.rfile.read(length).decode()
            fmt = self.headers.get("X-Format", "JSONEachRow")
            try:
                body, status = backend.query(sql, fmt), 200
            except SinkError as exc:
                body, status = str(exc).encode(), 400
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class SqlServer:
    def __init__(self, backend: Backend, data_dir: Path) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(backend))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._file = data_dir / ENDPOINT_FILE
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SqlServer:
        self._thread.start()
        self._file.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.unlink(missing_ok=True)
        self._server.shutdown()
        self._server.server_close()


class RemoteBackend:
    """Query-only client of a running :class:`SqlServer`; one kept-alive connection per thread."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url
        self.database = database
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        # Closed when the backend is, or when it is collected (never left to the GC's warnings).
        self._finalizer = weakref.finalize(self, _close_all, self._opened)

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        while True:
            reused = getattr(self._local, "connection", None) is not None
            connection = self._connection()
            try:
                connection.request("POST", "/", sql.encode(), {"X-Format": fmt})
                response = connection.getresponse()
                body: bytes = response.read()
                break
            except (http.client.HTTPException, OSError) as exc:
                connection.close()
                self._local.connection = None
                # Only a kept-alive connection the server had closed is tried again (the query
                # never reached it); anything else may have run and is reported.
                if not (reused and isinstance(exc, _STALE)):
                    raise SinkError(f"sink SQL endpoint unreachable: {exc}", url=self.url) from None
        if response.status != 200:
            raise SinkError(body.decode(errors="replace"), backend="chdb (via sink)")
        return body

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            parsed = urllib.parse.urlsplit(self.url)
            connection = http.client.HTTPConnection(
                parsed.hostname or "127.0.0.1", parsed.port, timeout=300
            )
            self._local.connection = connection
            self._opened.append(connection)
        return connection

    def command(self, sql: str) -> None:
        self.query(sql, "TabSeparated")

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        raise SinkError("the SQL endpoint is read-mostly; inserts go through the sink", table=table)

    def close(self) -> None:
        self._finalizer()


def _close_all(connections: list[http.client.HTTPConnection]) -> None:
    for connection in connections:
        connection.close()


def running_endpoint(data_dir: Path) -> str | None:
    """The URL of the live SQL endpoint for this data dir, if its process is alive."""
    path = data_dir / ENDPOINT_FILE
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])
