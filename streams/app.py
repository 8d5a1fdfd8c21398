"""The faust runtime around the pure stages: one app, one consumer group, any number of workers."""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust
from faust.types import TP, EventT
from parcours.schemas import topics
from parcours.schemas.errors import ConfigError
from parcours.schemas.heap import tune_collector
from parcours.schemas.kafka import topic_partitions
from parcours.schemas.observe import CONSUMER_LAG, Health, OpsServer
from parcours.schemas.producer import codec_for
from parcours.schemas.records import Source
from parcours.schemas.settings import Settings
from parcours.schemas.watchdog import watch
from parcours.streams import tables
from parcours.streams.broker import trust_no_end_offsets
from parcours.streams.outbox import FRAME_LINGER_SECONDS, Outbox
from parcours.streams.stages import (
    WATERMARK_EVERY_MS,
    IdentityStage,
    IngestStage,
    JourneyStage,
    Stage,
)

log = logging.getLogger(__name__)


def _broker_credentials(settings: Settings) -> Any:
    if not settings.kafka_sasl_mechanism:
        return None
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=password.get_secret_value() if password else "",
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=None,
    )


def create_app(settings: Settings, health: Health | None = None) -> faust.App:
    if settings.kafka_bootstrap is None:
        raise ConfigError("a worker needs PARCOURS_KAFKA_BOOTSTRAP (or run it from the stack)")
    brokers = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(","))
    workdir = _ensure(settings.state_dir) if settings.state_dir else _fresh_workdir(settings)
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=_broker_credentials(settings),
        store=settings.state_store,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        datadir=str(workdir),
        topic_replication_factor=1,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=settings.rebalance_timeout_seconds,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_seconds / 6),
        broker_commit_interval=timedelta(seconds=1),
    )
    if not settings.kafka_sasl_mechanism:  # the check reads with a plain client
        trust_no_end_offsets(settings.kafka_bootstrap)
    _wire(app, settings)
    _reread_kept_partitions(app)
    _prompt_fetches(app, settings.fetch_max_wait_ms)
    _report_assignments(app, settings)
    _observe(app, settings, health or Health(settings.liveness_seconds))
    return app


def ready_file(settings: Settings, pid: int) -> Path:
    """Where worker ``pid`` writes the partitions it handles after each rebalance."""
    return _ensure(Path(settings.data_dir) / "workers") / f"ready-{pid}.json"


def _report_assignments(app: faust.App, settings: Settings) -> None:
    """After every rebalance (tables restored), write which partitions this worker handles: the
    embedded stack waits until every worker it started has joined before it is used."""

    async def write(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        partitions = sorted({tp.partition for tp in app.assignor.assigned_actives()})
        path = ready_file(settings, os.getpid())
        # Renamed into place: the stack polls the file and must never read it half-written.
        written = path.with_suffix(".tmp")
        written.write_text(json.dumps({"partitions": partitions}))
        written.replace(path)

    app.on_rebalance_complete.connect(write)  # type: ignore[arg-type]  # async receivers are fine


def _reread_kept_partitions(app: faust.App) -> None:
    """After a rebalance, read every stream partition again from its committed offset, and hand
    nothing to the agents before faust has sought there.

    A rebalance revokes every partition, also those this worker keeps, and faust 0.15 then loses
    messages in three ways (transport/consumer.py, tables/recovery.py):
    - its fetch loop, woken by the revoke, records the offset of the message it was handing to an
      agent after the read offsets were forgotten, while the agents' buffers holding the messages
      before it are cleared; the broker restarts the partition at the committed offset and faust
      drops everything below that stale read offset as already read;
    - at the end of recovery it resumes the stream partitions, seeks them to their committed
      offsets, then clears the agents' buffers and resumes the flow. Messages fetched between the
      resume and the seek are handed to the agents, counted as read (the seek's rewind turns them
      into a "gap", which counts as acknowledged) and then cleared unprocessed;
    - what its fetcher returns while the flow is stopped it drops, then seeks every partition
      back to its committed offset; aiokafka leaves a partition that has none where it is, past
      the dropped messages. A dead worker's partition taken over before it ever committed lost
      its first messages that way (see :func:`rewind_uncommitted`).
    So the read offsets are forgotten once partitions are assigned, the flow is stopped when
    recovery completes (faust resumes it itself after the seek), and a partition without a
    committed offset is sought to its first message. At worst a message is processed twice, which
    the stages absorb (a duplicate changes nothing)."""

    async def forget(sender: Any, assigned: Any = None, *args: Any, **kwargs: Any) -> None:
        consumer: Any = app.consumer  # faust keeps the offsets it read in a private map
        changelogs = app.tables.changelog_topics
        for tp in assigned or ():
            if tp.topic not in changelogs:
                consumer._read_offset.pop(tp, None)

    async def hold(sender: Any, *args: Any, **kwargs: Any) -> None:
        app.consumer.stop_flow()

    app.on_partitions_assigned.connect(forget)  # type: ignore[arg-type]  # async receivers are fine
    app.on_rebalance_complete.connect(hold)  # type: ignore[arg-type]
    consumer: Any = app.consumer  # faust's: its perform_seek calls this instance's method
    consumer.seek_to_committed = rewind_uncommitted(
        consumer.seek_to_committed,
        consumer._thread.seek_to_beginning,  # the aiokafka consumer's, in its thread
        lambda topic: topic in app.tables.changelog_topics,
    )


Committed = Mapping[Any, int | None]


def rewind_uncommitted(
    seek_to_committed: Callable[[], Awaitable[Committed]],
    seek_to_beginning: Callable[..., Awaitable[Any]],
    is_changelog: Callable[[str], bool],
) -> Callable[[], Awaitable[Committed]]:
    """``seek_to_committed`` that also seeks each stream partition without a committed offset (or
    with 0) to its first message, as ``auto_offset_reset=earliest`` means: aiokafka's seeks only
    partitions with an offset above 0. Changelog partitions stay where table recovery put them."""

    async def seek() -> Committed:
        committed = await seek_to_committed()
        fresh = [tp for tp, at in committed.items() if not at and not is_changelog(tp.topic)]
        if fresh:
            await seek_to_beginning(*fresh)
        return committed

    return seek


def _prompt_fetches(app: faust.App, max_wait_ms: int) -> None:
    """faust has the broker hold an empty fetch up to 1.5 s (hard-coded in its aiokafka driver).
    Tansu answers a waiting fetch by polling its log in halves of the wait left, so a record that
    lands during the wait is seen up to 0.75 s late, at each of the three hops. A short wait costs
    little: a fetch at the end of the log is cheap for the broker (``PARCOURS_FETCH_MAX_WAIT_MS``)."""

    async def shorten(sender: Any, *args: Any, **kwargs: Any) -> None:
        consumer: Any = app.consumer  # the aiokafka consumer sits behind faust's consumer thread
        consumer._thread._ensure_consumer()._fetcher._fetch_max_wait_ms = max_wait_ms

    app.on_partitions_assigned.connect(shorten)  # type: ignore[arg-type]  # async receivers are fine


LAG_EVERY_SECONDS = 5.0


def _observe(app: faust.App, settings: Settings, health: Health) -> None:
    """Liveness: the event loop beats every second. Readiness: the worker has joined the group
    and restored its tables once. Consumer lag of the stages' inputs every few seconds."""
    joined = False

    async def rebalanced(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        nonlocal joined
        joined = True

    app.on_rebalance_complete.connect(rebalanced)  # type: ignore[arg-type]
    health.not_ready = lambda: None if joined else "not yet joined the consumer group"

    async def beat() -> None:
        health.beat()

    app.timer(interval=1.0)(beat)

    inputs = {
        settings.topic(name) for name in (topics.TOUCHPOINTS, topics.IDENTITY, topics.RESOLVED)
    }

    async def lag() -> None:
        consumer: Any = app.consumer  # faust keeps the offsets it read in private maps
        for tp in app.assignor.assigned_actives():
            if tp.topic not in inputs:
                continue
            read = consumer._read_offset.get(tp)
            position = read + 1 if read is not None else consumer._committed_offset.get(tp)
            # Neither is known for a partition just assigned (nothing fetched yet): no figure.
            highwater = consumer.highwater(tp)
            if position is not None and highwater is not None:
                behind = max(0, highwater - position)
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(behind)

    app.timer(interval=LAG_EVERY_SECONDS)(lag)


def _fresh_workdir(settings: Settings) -> Path:
    return Path(tempfile.mkdtemp(prefix="faust-", dir=_ensure(settings.data_dir / "workers")))


def _table_options(settings: Settings) -> dict[str, Any]:
    """RocksDB's defaults (a 2 GiB block cache and three 64 MiB write buffers per table
    partition) would take a small worker's memory many times over."""
    if settings.state_store != "rocksdb://":
        return {}
    cache = settings.state_cache_mb * 1024 * 1024
    options = {"block_cache_size": cache, "write_buffer_size": max(cache // 4, 4 << 20)}
    return {"options": options | {"max_write_buffer_number": 2}}


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wire(app: faust.App, settings: Settings) -> None:
    codec = codec_for(settings)
    outbox = Outbox(app, settings, codec)
    _flush_before_commits(app, outbox)

    async def send_lingering_frames() -> None:  # a timer's sends (ticks) when no input comes
        outbox.send_frames(ready=True)

    app.timer(interval=FRAME_LINGER_SECONDS)(send_lingering_frames)

    def table(name: str, values: type = dict) -> Any:
        # faust's RocksDB store keeps (and edits) the options it is given: one dict per table.
        # Its tables read the serializer of their changes from the value type (bytes: raw),
        # and their changelog topics from the schema: both say the same.
        serializer = "raw" if values is bytes else "json"
        schema: Any = faust.Schema(key_serializer="json", value_serializer=serializer)
        options = _table_options(settings) | ({"value_type": bytes} if values is bytes else {})
        return tables.table(app, name, outbox, default=None, schema=schema, **options)

    # The journey stage keeps its profiles as JSON bytes (see ``RawTable``).
    nodes, profiles = table("identity-graph"), table("profiles", values=bytes)
    # Each stage's end-of-run bookkeeping, keyed "stage:partition", so a worker that takes a
    # partition over in a rebalance carries on where the last owner stopped.
    control = table("control")
    stages: tuple[Stage, ...] = (
        IngestStage(settings, codec, outbox, control),
        IdentityStage(settings, codec, outbox, control, nodes),
        JourneyStage(settings, codec, outbox, control, profiles),
    )
    for stage in stages:
        _agent(app, stage, outbox)
        if stage.loop:
            stage.owned = _owned(app, settings.topic(stage.input_topic))
            app.timer(interval=WATERMARK_EVERY_MS / 1000)(stage.tick)


def _flush_before_commits(app: faust.App, outbox: Outbox) -> None:
    """faust flushes its producer before it commits offsets (and when partitions are revoked):
    by then the outbox's records must be acknowledged too, or a crash right after the commit
    would lose them."""
    producer: Any = app.producer
    flush_tables = producer.flush

    async def flush() -> None:
        await outbox.flush()
        await flush_tables()

    producer.flush = flush


def _owned(app: faust.App, topic: str) -> Callable[[int], bool]:
    """Whether this worker handles ``topic``'s partition now: a timer must not act for a
    partition that a rebalance gave to another worker."""
    return lambda partition: TP(topic, partition) in app.assignor.assigned_actives()


def _agent(app: faust.App, stage: Stage, outbox: Outbox) -> None:
    async def run(stream: faust.StreamT[bytes]) -> None:
        event: EventT[bytes]
        async for event in stream.events():
            message = event.message
            source = Source(
                message.topic, message.partition, message.offset, int(message.timestamp * 1000)
            )
            await stage.handle(event.value or b"", source)
            outbox.send_frames(ready=True)

    app.agent(outbox.topic(stage.input_topic), name=stage.name)(run)


def check_copartitioned(settings: Settings) -> None:
    """Every stage keeps its state next to its input partition: that only holds when all of
    parcours' topics have the same number of partitions."""
    counts = {
        settings.topic(name): topic_partitions(settings, settings.topic(name))
        for name in topics.ALL
    }
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name}={count}" for name, count in sorted(counts.items()))
        raise ConfigError(f"parcours topics must all have the same partition count; found {listed}")


def run_worker(settings: Settings, parent_pid: int | None = None) -> None:
    """Block running one faust worker process until SIGTERM/SIGINT, its parent (``parent_pid``)
    is gone, or its broker is lost (schemas/watchdog.py)."""
    from faust.worker import Worker

    check_copartitioned(settings)
    tune_collector()
    health = Health(settings.liveness_seconds)
    app = create_app(settings, health)
    # After the app: the Kafka clients' loggers exist. faust's SIGTERM handler is its graceful stop.
    watch(
        settings,
        name=f"worker {os.getpid()}",
        parent_pid=parent_pid,
        stop=lambda: os.kill(os.getpid(), signal.SIGTERM),
    )
    # Their debug calls on every send are costly even when no handler prints them.
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(
            max(logging.WARNING, logging.getLevelName(settings.log_level))
        )
    level = settings.log_level.lower().replace("warning", "warn")
    ops = OpsServer(
        health, settings.metrics_host, settings.metrics_port, settings.data_dir, "worker"
    )
    with ops:
        Worker(app, loglevel=level, quiet=True).execute_from_commandline()
