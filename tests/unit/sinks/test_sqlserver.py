"""The SQL endpoint's client keeps its connection alive and recovers when the server closed it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from parcours.schemas.errors import SinkError
from parcours.sinks.sqlserver import RemoteBackend


class ClosesAfterEachAnswer(BaseHTTPRequestHandler):
    """Answers HTTP/1.1 without saying it closes, then closes: a kept-alive connection gone stale."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_POST(self) -> None:
        sql = self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"echo":"' + sql + b'"}\n'
        self.send_response(200 if not sql.startswith(b"BAD") else 400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    ClosesAfterEachAnswer.connections = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), ClosesAfterEachAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_stale_kept_alive_connection_is_replaced(url: str) -> None:
    backend = RemoteBackend(url, "parcours")
    assert backend.query("SELECT 1") == b'{"echo":"SELECT 1"}\n'
    assert backend.query("SELECT 2") == b'{"echo":"SELECT 2"}\n'
    assert ClosesAfterEachAnswer.connections == 2
    backend.close()


def test_an_error_answer_is_a_sink_error(url: str) -> None:
    backend = RemoteBackend(url, "parcours")
    with pytest.raises(SinkError, match="BAD"):
        backend.query("BAD SQL")
    backend.close()


def test_nothing_listening_is_named() -> None:
    backend = RemoteBackend("http://127.0.0.1:9/", "parcours")
    with pytest.raises(SinkError, match="sink SQL endpoint unreachable"):
        backend.query("SELECT 1")
    backend.close()
