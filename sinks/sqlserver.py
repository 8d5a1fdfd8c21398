"""A loopback HTTP endpoint in the process that owns chDB, so ``parcours sql`` answers while the
stack runs (chDB lets one process open a data dir at a time)."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from parcours.schemas.errors import SinkError
from parcours.sinks.backend import Backend

ENDPOINT_FILE = "sql-endpoint.json"


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
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
    """Query-only client of a running :class:`SqlServer`."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url
        self.database = database

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        request = urllib.request.Request(
            self.url, data=sql.encode(), headers={"X-Format": fmt}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            raise SinkError(
                exc.read().decode(errors="replace"), backend="chdb (via sink)"
            ) from None
        except urllib.error.URLError as exc:
            raise SinkError(f"sink SQL endpoint unreachable: {exc.reason}", url=self.url) from None

    def command(self, sql: str) -> None:
        self.query(sql, "TabSeparated")

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        raise SinkError("the SQL endpoint is read-mostly; inserts go through the sink", table=table)

    def close(self) -> None:
        pass


def running_endpoint(data_dir: Path) -> str | None:
    """The URL of the live SQL endpoint for this data dir, if its process is alive."""
    path = data_dir / ENDPOINT_FILE
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])
