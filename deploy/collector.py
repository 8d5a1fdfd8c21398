"""``parcours collect``: channels send touchpoints over HTTP; agents read a customer's story.

Starlette on uvicorn: a small, well-kept ASGI toolkit with CORS, routing and a test client, and
no validation layer of its own — every event is validated by the SDK (``parse_touchpoint``),
the same rules as for Python producers, so one definition of a valid touchpoint exists.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import orjson
import uvicorn
from parcours.deploy.delivery import AckingProducer
from parcours.schemas.codec import Codec
from parcours.schemas.errors import (
    CollectorError,
    QueryError,
    RequestError,
    SinkError,
    ValidationError,
)
from parcours.schemas.producer import codec_for, encode_touchpoint
from parcours.schemas.sdk import IDENTITY_TYPES, Guard, hash_email, hash_phone, parse_touchpoint
from parcours.schemas.settings import Settings
from parcours.sinks.backend import Backend, open_backend
from parcours.sinks.profiles import read_profile
from parcours.sinks.sqlserver import RemoteBackend, running_endpoint
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)
ADDRESS_FILE = "collector.json"
SNIPPET = "parcours.js"


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    events: Counter
    seconds: Histogram
    queue: Gauge

    @classmethod
    def create(cls, queue_size: Callable[[], int]) -> Metrics:
        registry = CollectorRegistry()
        queue = Gauge(
            "parcours_collector_queue_messages",
            "Events produced and not yet acknowledged by Kafka",
            registry=registry,
        )
        queue.set_function(lambda: float(queue_size()))
        return cls(
            registry,
            Counter(
                "parcours_collector_requests",
                "HTTP requests by route and status",
                ["route", "status"],
                registry=registry,
            ),
            Counter(
                "parcours_collector_events",
                "Events by source and outcome (accepted = acknowledged by Kafka)",
                ["source", "outcome"],
                registry=registry,
            ),
            Histogram(
                "parcours_collector_request_seconds",
                "Time to answer, by route",
                ["route"],
                registry=registry,
            ),
            queue,
        )


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # navigator.sendBeacon cannot set headers: browser trackers put the write key in the URL.
    return request.query_params.get("key", "")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, gunzipped if it says so; 413 past ``max_bytes`` either way (a gzip bomb stops
    at the limit, it is never inflated whole)."""
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    inflater = zlib.decompressobj(wbits=31) if gzipped else None
    body = bytearray()
    async for chunk in request.stream():
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, max_bytes + 1 - len(body))
            except zlib.error as exc:
                raise RequestError(400, f"body: not gzip ({exc})") from None
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(413, f"body: larger than {max_bytes} bytes")
    if inflater is not None and not inflater.eof:
        raise RequestError(400, "body: truncated gzip stream")
    return bytes(body)


def events_of(body: bytes, max_events: int) -> list[Any]:
    """``{"batch": [...]}`` or one touchpoint object → the list of events as sent."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"body: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise RequestError(400, 'body: must be {"batch": [...]} or one touchpoint object')
    batch = document.get("batch", [document])
    if not isinstance(batch, list):
        raise RequestError(400, "batch: must be a list of touchpoints")
    if len(batch) > max_events:
        raise RequestError(413, f"batch: {len(batch)} events, at most {max_events} per request")
    return batch


def validate(
    events: list[Any], source: str, codec: Codec, topic: str, guard: Guard
) -> tuple[list[tuple[bytes, bytes]], list[dict[str, Any]]]:
    """Each event through the SDK's rules (the contract, the size limit, the PII policy), with
    the write key's source recorded on it."""
    messages, rejected = [], []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            rejected.append({"index": index, "error": "event: must be a JSON object"})
            continue
        try:
            touchpoint = parse_touchpoint(event | {"source": source}, guard)
            key, value = encode_touchpoint(codec, topic, touchpoint)
            guard.check_size(len(value), "event (Avro)")
        except ValidationError as exc:
            rejected.append({"index": index, "error": str(exc)})
            continue
        messages.append((key, value))
    return messages, rejected


def _error(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Producing(Protocol):
    """What the app needs of a producer (:class:`AckingProducer`)."""

    def __len__(self) -> int: ...

    async def send(self, topic: str, messages: list[tuple[bytes, bytes]]) -> None: ...

    def close(self) -> None: ...


def create_app(
    settings: Settings,
    producer: Producing,
    reader: Callable[[], Backend],
) -> Starlette:
    """The collector and profile API. ``reader`` gives the ClickHouse backend for each profile
    read (the sink's SQL endpoint on the embedded stack can move when the sink restarts)."""
    topic = settings.topic("touchpoints")
    codec = codec_for(settings)
    write_keys, read_keys = settings.write_keys, settings.read_keys
    metrics = Metrics.create(lambda: len(producer))

    def observed(route: str, response: Response, started: float) -> Response:
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.seconds.labels(route).observe(time.perf_counter() - started)
        return response

    async def touchpoints(request: Request) -> Response:
        started = time.perf_counter()
        return observed("touchpoints", await _touchpoints(request), started)

    async def _touchpoints(request: Request) -> Response:
        source = write_keys.get(_bearer(request))
        if source is None:
            return _error(401, "a valid write key is required: Authorization: Bearer <key>")
        try:
            body = await read_body(request, settings.collector_max_bytes)
            events = events_of(body, settings.collector_max_events)
        except RequestError as exc:
            return _error(exc.status, exc.message)
        messages, rejected = validate(events, source, codec, topic, settings.guard)
        try:
            await producer.send(topic, messages)
        except CollectorError as exc:
            return _error(exc.status, exc.message, exc.retry_after)
        metrics.events.labels(source, "accepted").inc(len(messages))
        metrics.events.labels(source, "rejected").inc(len(rejected))
        return JSONResponse({"accepted": len(messages), "rejected": rejected})

    async def profile(request: Request) -> Response:
        started = time.perf_counter()
        return observed("profiles", await _profile(request), started)

    async def _profile(request: Request) -> Response:
        if _bearer(request) not in read_keys:
            return _error(401, "a valid read key is required: Authorization: Bearer <key>")
        kind = request.path_params["identity_type"]
        value = request.path_params["value"]
        try:
            kind, value = _hashed(kind, value)
            found = await run_in_threadpool(read_profile, reader(), kind, value)
        except (QueryError, ValidationError) as exc:
            return _error(400, exc.message)
        except CollectorError as exc:
            return _error(exc.status, exc.message, exc.retry_after)
        except SinkError as exc:  # ClickHouse down or refusing: the agent may try again
            log.warning("profile read failed: %s", exc)
            return _error(503, f"ClickHouse did not answer: {exc.message}", 5)
        if found is None:
            return _error(404, f"no profile has the identity {kind}:{value}")
        return Response(orjson.dumps(found), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "queue": len(producer)})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    snippet = resources.files("parcours.deploy").joinpath("static", SNIPPET).read_bytes()

    async def script(request: Request) -> Response:
        return Response(snippet, media_type="text/javascript")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        producer.close()

    origins = [o.strip() for o in settings.collector_cors_origins.split(",") if o.strip()]
    return Starlette(
        routes=[
            Route("/v1/touchpoints", touchpoints, methods=["POST"]),
            Route("/v1/profiles/{identity_type}/{value:path}", profile, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route(f"/v1/{SNIPPET}", script, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
                max_age=3600,
            )
        ],
        lifespan=lifespan,
    )


def _hashed(kind: str, value: str) -> tuple[str, str]:
    """An agent may look a caller up by the plain e-mail or phone number (``email``, ``phone``):
    hashed here with the SDK's normalisation, and never stored."""
    if kind == "email":
        return "email_sha256", hash_email(value)
    if kind == "phone":
        return "phone_sha256", hash_phone(value)
    if kind not in IDENTITY_TYPES:
        raise QueryError(f"identity_type: unknown {kind!r} (known: {', '.join(IDENTITY_TYPES)})")
    return kind, value


def write_address(data_dir: Path, url: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / ADDRESS_FILE).write_text(json.dumps({"url": url, "pid": os.getpid()}))


def _forget_address(data_dir: Path) -> None:
    """Remove our address, not the one another collector of this data dir wrote since."""
    try:
        if json.loads((data_dir / ADDRESS_FILE).read_text())["pid"] == os.getpid():
            (data_dir / ADDRESS_FILE).unlink()
    except (OSError, ValueError, KeyError):
        pass


def running_collector(data_dir: Path) -> str | None:
    """The URL of the live collector of this data dir, if its process is alive."""
    try:
        info = json.loads((data_dir / ADDRESS_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])


def reader_for(settings: Settings) -> Callable[[], Backend]:
    """ClickHouse for the profile API: a server directly; chDB through the sink, which holds it."""
    if settings.chdb_path is None:
        backend = open_backend(settings)
        return lambda: backend

    remotes: dict[str, RemoteBackend] = {}  # keeps its connections alive across requests

    def via_sink() -> Backend:
        url = running_endpoint(settings.data_dir)
        if url is None:
            raise CollectorError(
                "ClickHouse is not reachable: on chDB the sink serves it, and no sink runs",
                retry_after=5,
                data_dir=str(settings.data_dir),
            )
        if url not in remotes:
            remotes[url] = RemoteBackend(url, settings.clickhouse_database)
        return remotes[url]

    return via_sink


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def serve(settings: Settings) -> None:
    """Run the collector until SIGTERM/SIGINT; its address is in DATA_DIR/collector.json."""
    if not settings.write_keys:
        log.warning("PARCOURS_COLLECTOR_KEYS is empty: every POST will get 401")
    producer = AckingProducer(settings)
    app = create_app(settings, producer, reader_for(settings))
    sock = listening_socket(settings.collector_host, settings.collector_port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, log_level=settings.log_level.lower(), access_log=False, lifespan="on"
    )
    write_address(settings.data_dir, f"http://{host}:{port}")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        _forget_address(settings.data_dir)
