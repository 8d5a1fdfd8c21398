"""The three stages as faust sees them: decode a message, call the pure core, publish its outputs.

ingest   touchpoints → identity           validate, dead-letter, watermark per input partition
identity identity → touchpoints.resolved  the identity graph (table ``identity-graph``)
journey  touchpoints.resolved → sinks     profiles and journeys (table ``profiles``)

Each stage's state lives in a faust table whose changelog restores it on whichever worker takes
the partition over. Control records (watermarks, end-of-run markers and rounds) are sent to every
partition of the next topic so each task downstream can take the minimum over its inputs.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from parcours.schemas import topics
from parcours.schemas.codec import Codec
from parcours.schemas.errors import SchemaError, StateError
from parcours.schemas.observe import DEAD_LETTERS, EVENTS_IN, EVENTS_OUT, WATERMARKS
from parcours.schemas.records import Source, dead_letter_record
from parcours.schemas.sdk import is_blocklisted
from parcours.schemas.settings import Settings
from parcours.streams.clock import UNKNOWN, Announce, EndOfRun, Epochs, EpochVote, Watermarks
from parcours.streams.facts import EventFacts, facts_of, flat
from parcours.streams.identity import (
    Effects,
    IdentityGraph,
    Link,
    profile_id,
    usable_identities,
)
from parcours.streams.ingest import DeadLetter, Forward, Ingest
from parcours.streams.ingest import EndOfRun as RunEnds
from parcours.streams.journey import JourneyCore, Outputs, ProfileState
from parcours.streams.outbox import Outbox
from parcours.streams.render import dropoff_record, followup_record, handoff_record, pivot_record
from parcours.streams.rules import Rules
from parcours.streams.timers import Timers

log = logging.getLogger(__name__)

Table = MutableMapping[str, Any]
RawTable = MutableMapping[str, bytes]
"""A table whose values are kept as the JSON bytes they travel as (faust's ``raw`` serializer):
decoded, a profile takes three times the memory of its JSON, and a worker holds every profile of
its partitions."""


def _absent(raw: bytes | None) -> bool:
    """Whether a raw table holds nothing for a key: no value, or deleted before a restart."""
    return raw is None or raw == b"null"


def _value(raw: bytes | None) -> Any:
    """A raw table's value, decoded (None: see :func:`_absent`)."""
    return None if _absent(raw) else orjson.loads(raw or b"")


"""A faust table in the worker (JSON values, changelogged); any dict in tests."""

RECORD_KEY = "record:"
"""Prefix of the keys under which the journey stage keeps the record each event came in, once,
beside the profiles (a profile is saved whole at every change, and that record is most of an
event's bytes). In the profiles table on purpose: a record is written to the same changelog
partition as, and before, the profile save that holds its event, so a restored profile never
lacks the record of an event it holds."""

RECENT_STATES = 20_000
"""Profiles a journey task keeps decoded after saving them (the next event often comes soon)."""

WATERMARK_EVERY_MS = 500
"""How often (wall clock) a task acts on how far its event time has got: ingest tells the next
stage, identity and journey start an epoch (pacing only: no result depends on it)."""


def wall_ms() -> int:
    return int(time.time() * 1000)


def epoch_ms(value: datetime | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def rules_of(settings: Settings) -> Rules:
    quiet = settings.quiet_window
    return Rules(
        session_idle_ms=_ms(settings.session_idle_seconds),
        journey_idle_ms=_ms(settings.journey_idle_seconds),
        allowed_lateness_ms=_ms(settings.allowed_lateness_seconds),
        pivot_failure_window_ms=_ms(settings.pivot_failure_window_seconds),
        cart_abandon_ms=_ms(settings.cart_abandon_seconds),
        checkout_abandon_ms=_ms(settings.checkout_abandon_seconds),
        contact_abandon_ms=_ms(settings.contact_abandon_seconds),
        assisted_channels=tuple(settings.assisted_channels.split(",")),
        handoff_history=settings.handoff_history,
        followup_channels=tuple(settings.followup_channels.split(",")),
        followup_delay_ms=_ms(settings.followup_delay_seconds),
        followup_ttl_ms=_ms(settings.followup_ttl_seconds),
        frequency_cap_ms=_ms(settings.frequency_cap_seconds),
        quiet_start=quiet[0] if quiet else None,
        quiet_end=quiet[1] if quiet else None,
        default_timezone=settings.default_timezone,
        recovery_window_ms=_ms(settings.recovery_window_seconds),
    )


class Stage:
    """What every stage does with control records; subclasses handle their data records."""

    input_topic: str
    output_topic: str
    upstream_topic: str
    """Whose tasks feed this one: each sends its watermark and end-of-run marker to every task."""
    watermark_every_ms = WATERMARK_EVERY_MS
    loop = False
    """Whether the stage's tasks send each other messages (links, transfers): then its time moves
    in epochs that close only when nothing caused up to their horizon is in flight."""
    idle_inputs = True
    """Whether a silent input may stop holding time back (live mode); a stage fed by another's
    closed epochs always waits for them."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        outbox: Outbox,
        control: Table,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.out = outbox
        self.control = control
        # Whether a task did anything since its last end-of-run announcement. A task this process
        # has not seen yet (new, or taken over in a rebalance) is assumed busy: an extra round,
        # never a premature end.
        self.active: dict[int, bool] = {}
        self.clocks: dict[int, Watermarks] = {}
        self.last_watermark_at: dict[int, int] = {}
        self.process = uuid.uuid4().hex
        # Earliest cause of the loop messages each task sent since its last epoch vote; a task
        # this process has not seen yet reports UNKNOWN (never a premature close).
        self.sent: dict[int, int | None] = {}
        self.closed: dict[int, int | None] = {}
        self.nudged: set[int] = set()
        self.owned: Callable[[int], bool] = lambda partition: True
        """Whether this process handles ``partition`` now (the app sets it from the assignment)."""
        self.rules = rules_of(settings)
        # Once: finding a labelled counter costs more than counting, and it is done per event.
        self.events_in = EVENTS_IN.labels(self.name)
        self.events_out = EVENTS_OUT.labels(self.name)

    def touched(self, partition: int) -> None:
        self.active[partition] = True

    def loop_sent(self, partition: int, cause: int) -> None:
        """Call after the send: a vote made before it reports the message in the next one."""
        self.touched(partition)
        if partition in self.sent:
            known = self.sent[partition]
            self.sent[partition] = cause if known is None else min(known, cause)

    def epochs(self, partition: int) -> Epochs:
        """This task's epoch rounds, from the changelogged ``control`` table."""
        tasks = self.out.partitions(self.input_topic)
        data = self.control.get(f"{self.name}-epochs:{partition}")
        return Epochs.from_json(partition, tasks, data, sent=self.sent.get(partition, UNKNOWN))

    def keep_epochs(self, partition: int, epochs: Epochs) -> None:
        self.sent[partition] = epochs.sent
        self.closed[partition] = epochs.closed
        self.control[f"{self.name}-epochs:{partition}"] = epochs.to_json()

    def closed_horizon(self, partition: int) -> int | None:
        if partition not in self.closed:
            self.closed[partition] = self.epochs(partition).closed
        return self.closed[partition]

    def frontier(self, partition: int) -> int | None:
        """The horizon this task's inputs allow: every on-time event up to it has come."""
        watermark = self.clock(partition).current()
        return None if watermark is None else self.rules.horizon(watermark, finished=False)

    def end_of_run(self, partition: int) -> EndOfRun:
        """This task's end-of-run bookkeeping, from the changelogged ``control`` table."""
        tasks = self.out.partitions(self.input_topic)
        data = self.control.get(f"{self.name}:{partition}")
        return EndOfRun.from_json(partition, tasks, data, active=self.active.get(partition, True))

    def keep(self, partition: int, end: EndOfRun) -> None:
        self.active[partition] = end.active
        self.control[f"{self.name}:{partition}"] = end.to_json()

    def clock(self, partition: int) -> Watermarks:
        if partition not in self.clocks:
            idle = _ms(self.settings.watermark_idle_seconds) if self.idle_inputs else None
            clock = Watermarks(
                self.out.partitions(self.upstream_topic),
                idle_ms=idle,
                lateness_ms=self.rules.allowed_lateness_ms,
                wall_ms=wall_ms,
            )
            clock.replays = set(self.control.get(f"{self.name}-replays:{partition}") or ())
            settled = self.control.get(f"{self.name}-settled:{partition}")
            if settled is not None:  # a replay ended here and nothing came since, before a restart
                clock.finish(settled["watermark"])
            self.clocks[partition] = clock
        return self.clocks[partition]

    def observe(self, partition: int, source: int, watermark: int) -> None:
        """Input ``source`` of this task has reached ``watermark`` (event time moves on)."""
        clock = self.clock(partition)
        if clock.settled:
            self.control.pop(f"{self.name}-settled:{partition}", None)
        clock.observe(source, watermark)

    def replays(self, partition: int, run_id: str, *, open_: bool) -> None:
        """A replay began (or ended) on the inputs: no input is idle while one is open."""
        clock = self.clock(partition)
        if open_:
            clock.replays.add(run_id)
        else:
            clock.replays.discard(run_id)
        self.control[f"{self.name}-replays:{partition}"] = sorted(clock.replays)  # type: ignore[assignment]

    async def dead_letter(self, value: bytes, reason: str, source: Source) -> None:
        log.warning("dead-lettered %s[%d]@%d: %s", *_where(source), reason)
        DEAD_LETTERS.labels(self.name).inc()
        record = dead_letter_record("worker", reason, value, source)
        await self.out.send(topics.DEAD_LETTERS, "DeadLetter", record)

    async def handle(self, value: bytes, source: Source) -> None:
        """One message: a record, or a frame of them (handled in order)."""
        try:
            items = self.codec.unframe(value)
        except SchemaError as exc:
            await self.dead_letter(value, f"SchemaError: {exc}", source)
            return
        for index, item in enumerate(items):
            await self.handle_record(item, source, "" if item is value else f"item {index}: ")

    async def handle_record(self, value: bytes, source: Source, where: str) -> None:
        """``where``: the record's place in its frame, for the dead letter's reason."""
        try:
            name, record = self.codec.decode(value)
            kind = name.rsplit(".", 1)[-1]
            await self.dispatch(kind, record, value, source)
        except (SchemaError, KeyError, TypeError, ValueError) as exc:
            self.on_failure()
            await self.dead_letter(value, f"{where}{type(exc).__name__}: {exc}", source)
        except Exception as exc:
            # A bug must not stop the partition: the message is kept in the dead letters with
            # the error, and the traceback goes to the log.
            log.exception("failed on %s[%d]@%d %s", *_where(source), where)
            self.on_failure()
            reason = f"{where}internal error {type(exc).__name__}: {exc}"
            await self.dead_letter(value, reason, source)

    def on_failure(self) -> None:
        """A record failed, maybe half-way: forget what it may have half changed."""

    async def dispatch(self, kind: str, record: dict[str, Any], raw: bytes, source: Source) -> None:
        if self.newly_handled(source.partition):
            await self.take_over(source.partition, source.offset)
        if kind == "Watermark":
            self.observe(
                source.partition, record["source_partition"], epoch_ms(record["watermark"]) or 0
            )
            await self.pass_watermark(source.partition)
        elif kind == "Tick":
            await self.on_tick(source.partition)
        elif kind == "EpochRound":
            await self.on_vote(EpochVote(**record), source.partition)
        elif kind == "Marker" and record.get("begins"):
            self.replays(source.partition, record["run_id"], open_=True)
        elif kind == "Marker":
            end = self.end_of_run(source.partition)
            announce = end.input_done(
                record["run_id"],
                record["source_partition"],
                record["source_partitions"],
                epoch_ms(record["watermark"]),
            )
            self.keep(source.partition, end)
            await self.announce(announce)
        elif kind == "RunRound":
            end = self.end_of_run(source.partition)
            verdict = end.vote(Announce(**(record | {"watermark": epoch_ms(record["watermark"])})))
            self.keep(source.partition, end)
            if isinstance(verdict, Announce):
                await self.announce(verdict)
            elif verdict:
                await self.finish(record["run_id"], source.partition, epoch_ms(record["watermark"]))
        else:
            await self.on_record(kind, record, raw, source)

    def newly_handled(self, partition: int) -> bool:
        """Whether ``partition`` has just come to this process (start, rebalance, a dead worker's
        share); the changelogged ``control`` table says which process handled it last."""
        key = f"{self.name}-owner:{partition}"
        if self.control.get(key) == {"owner": self.process}:
            return False
        self.control[key] = {"owner": self.process}
        return True

    async def take_over(self, partition: int, resumed_at: int) -> None:
        """``partition`` came to this process; its input resumes at offset ``resumed_at`` (the
        committed one: faust flushed every output of the records before it)."""
        self.clocks.pop(partition, None)
        self.nudged.discard(partition)
        self.sent.pop(partition, None)
        self.closed.pop(partition, None)
        if self.loop:
            epochs = self.epochs(partition)
            again = epochs.resume()
            self.keep_epochs(partition, epochs)
            await self.vote([again] if again else [])
        end = self.end_of_run(partition)
        for announce in end.resume():
            await self.announce(announce)
        for run_id, watermark in end.finished():
            await self.pass_marker(run_id, partition, watermark)
        await self.on_take_over(partition, resumed_at)

    async def on_take_over(self, partition: int, resumed_at: int) -> None:
        """What a stage re-sends when a partition comes to it. faust publishes an agent's sends
        when it commits the offset while table changes go out at once, so a killed owner can
        leave state behind whose outputs never left."""

    async def on_record(
        self, kind: str, record: dict[str, Any], raw: bytes, source: Source
    ) -> None:
        raise SchemaError(f"a {kind} record does not belong on {source.topic}")

    async def announce(self, announce: Announce | None) -> None:
        if announce is not None:
            await self.out.everywhere(self.input_topic, "RunRound", flat(announce))

    async def pass_watermark(self, partition: int) -> None:
        """At most every ``watermark_every_ms`` of wall clock, act on this task's watermark."""
        now = wall_ms()
        if now - self.last_watermark_at.get(partition, 0) < self.watermark_every_ms:
            return
        current = self.watermark(partition)
        if current is not None:
            self.last_watermark_at[partition] = now
            await self.on_watermark(partition, current)

    def watermark(self, partition: int) -> int | None:
        current: int | None = self.clock(partition).current()
        return current

    async def on_watermark(self, partition: int, watermark: int) -> None:
        """A stage without a loop tells every task of the next stage how far it has got; one with
        a loop starts an epoch (the next stage hears when it closes)."""
        WATERMARKS.observe(self.name, partition, watermark)
        if not self.loop:
            await self.tell_downstream(partition, watermark)
            return
        epochs = self.epochs(partition)
        vote = epochs.begin(self.rules.horizon(watermark, finished=False))
        self.keep_epochs(partition, epochs)
        await self.vote([vote] if vote else [])

    async def tell_downstream(self, partition: int, watermark: int) -> None:
        record = {"source_partition": partition, "watermark": watermark}
        await self.out.everywhere(self.output_topic, "Watermark", record)

    async def vote(self, votes: list[EpochVote]) -> None:
        for vote in votes:
            await self.out.everywhere(self.input_topic, "EpochRound", flat(vote))

    async def on_vote(self, vote: EpochVote, partition: int) -> None:
        epochs = self.epochs(partition)
        votes, closed = epochs.receive(vote, self.frontier(partition))
        self.keep_epochs(partition, epochs)
        await self.vote(votes)
        if closed is not None:
            await self.on_closed(partition, closed)

    async def on_closed(self, partition: int, horizon: int) -> None:
        """Every on-time event up to ``horizon`` and everything it caused in this stage is done."""

    async def tick(self) -> None:
        """Wall-clock heartbeat: time must go on when no record comes in (an idle input counts as
        the wall clock minus the allowed lateness; an epoch whose inputs moved starts). A timer
        cannot write tables, so it sends the task a ``Tick`` through its own partition."""
        for partition in list(self.clocks):
            if partition in self.nudged or not self.owned(partition):
                continue
            epochs = self.epochs(partition)
            frontier = self.frontier(partition)
            if epochs.running or frontier is None:
                continue
            if epochs.closed is None or frontier > epochs.closed:
                await self.nudge(partition)

    async def nudge(self, partition: int) -> None:
        """Send the task a ``Tick`` through its own partition (once until it is handled)."""
        self.nudged.add(partition)
        await self.out.to_partition(self.input_topic, "Tick", {"task": partition}, partition)

    async def on_tick(self, partition: int) -> None:
        self.nudged.discard(partition)
        current = self.watermark(partition)
        if current is not None:
            self.last_watermark_at[partition] = wall_ms()
            await self.on_watermark(partition, current)

    async def finish(self, run_id: str, partition: int, watermark: int | None) -> None:
        """The run is over for this task: its watermark jumps to the run's; tell the next stage."""
        self.replays(partition, run_id, open_=False)
        self.clock(partition).finish(watermark or 0)
        # Kept so that a worker restarted after the run does not take the silence for idleness.
        self.control[f"{self.name}-settled:{partition}"] = {
            "watermark": self.clock(partition).floor
        }
        await self.on_finished(partition)
        await self.pass_marker(run_id, partition, watermark)

    async def pass_marker(self, run_id: str, partition: int, watermark: int | None) -> None:
        """Tell every task of the next stage (or the sink) that the run is over for this task."""
        marker = {
            "run_id": run_id,
            "stage": self.name,
            "source_partition": partition,
            "source_partitions": self.out.partitions(self.input_topic),
            "watermark": watermark,
        }
        for name in self.downstream():
            await self.out.everywhere(name, "Marker", marker)

    async def on_finished(self, partition: int) -> None:
        """What a stage does at the end of a run before passing the marker on."""

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("Stage").lower()

    def downstream(self) -> tuple[str, ...]:
        return (self.output_topic,)


class IngestStage(Stage):
    """``touchpoints`` → ``identity``: one partition per task, nothing shared between tasks."""

    input_topic = topics.TOUCHPOINTS
    output_topic = topics.IDENTITY
    upstream_topic = topics.TOUCHPOINTS

    def __init__(self, settings: Settings, codec: Codec, outbox: Outbox, control: Table) -> None:
        super().__init__(settings, codec, outbox, control)
        self.ingest = Ingest(codec, settings.guard)

    async def handle_record(self, value: bytes, source: Source, where: str) -> None:
        outcome = self.ingest.process(value, source, where)
        if isinstance(outcome, Forward | DeadLetter):
            self.events_in.inc()
        if isinstance(outcome, Forward):
            await self.out.send_raw(self.output_topic, outcome.value, key=outcome.key.decode())
            self.events_out.inc()
            self.observe(source.partition, source.partition, outcome.occurred_at)
            await self.pass_watermark(source.partition)
        elif isinstance(outcome, DeadLetter):
            log.warning("dead-lettered %s[%d]@%d: %s", *_where(source), outcome.reason)
            await self.out.send_raw(topics.DEAD_LETTERS, outcome.value)
            DEAD_LETTERS.labels(self.name).inc()
        elif isinstance(outcome, RunEnds):
            marker = self.ingest.worker_marker(outcome.marker, source)
            await self.out.everywhere(self.output_topic, "Marker", marker)

    def watermark(self, partition: int) -> int | None:
        """An ingest task has one input, its own partition: the latest event time seen there."""
        latest: int | None = self.clock(partition).marks.get(partition)
        return latest


class IdentityStage(Stage):
    input_topic = topics.IDENTITY
    output_topic = topics.RESOLVED
    upstream_topic = topics.TOUCHPOINTS
    loop = True

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        outbox: Outbox,
        control: Table,
        nodes: Table,
    ) -> None:
        super().__init__(settings, codec, outbox, control)
        self.graph = IdentityGraph(nodes)
        self.nodes = nodes

    async def dispatch(self, kind: str, record: dict[str, Any], raw: bytes, source: Source) -> None:
        self.graph.tags = {"partition": source.partition}
        await super().dispatch(kind, record, raw, source)

    async def on_take_over(self, partition: int, resumed_at: int) -> None:
        """Every node this process holds announces its links and merges again (see
        ``IdentityGraph.announce``), not only the new partition's: a restored table can miss a
        dead owner's last writes (the broker's end offsets can lag), and the neighbours that
        still know better re-teach them. Labels only ever decrease, so an announcement from a
        stale node changes nothing."""
        source = Source(self.input_topic, partition, -1, 0)
        for node in list(self.nodes):
            await self.publish(self.graph.announce(node), source)
        closed = self.closed_horizon(partition)
        if closed is not None:  # the last owner's news of it may have died with it
            await self.on_closed(partition, closed)

    async def on_closed(self, partition: int, horizon: int) -> None:
        """Tell the journey stage: every event up to ``horizon``, and every merge it caused, has
        been sent (as the watermark at which that horizon is reached)."""
        await self.tell_downstream(partition, self.rules.watermark_at(horizon))

    async def on_record(
        self, kind: str, record: dict[str, Any], raw: bytes, source: Source
    ) -> None:
        if kind == "ResolvedTouchpoint":
            await self.on_touchpoint(record, source)
        elif kind == "IdentityLink":
            await self.on_link(Link(**record), source)
        else:
            await super().on_record(kind, record, raw, source)

    async def on_touchpoint(self, record: dict[str, Any], source: Source) -> None:
        self.events_in.inc()
        touchpoint = record["touchpoint"]
        identities = usable_identities(touchpoint["identities"], touchpoint["event_id"])
        occurred_at = epoch_ms(touchpoint["occurred_at"]) or 0
        label, effects = self.graph.observe(identities, touchpoint["event_id"], occurred_at)
        await self.publish(effects, source)
        profile = profile_id(label)
        resolved = record | {"profile_id": profile}
        await self.out.send(self.output_topic, "ResolvedTouchpoint", resolved, key=profile)
        self.events_out.inc()

    async def on_link(self, link: Link, source: Source) -> None:
        await self.publish(self.graph.receive(link), source)

    async def publish(self, effects: Effects, source: Source) -> None:
        if effects.changed:
            self.touched(source.partition)
        for link in effects.links:
            record = flat(link)
            await self.out.send(self.input_topic, "IdentityLink", record, key=link.target)
            self.loop_sent(source.partition, link.occurred_at)
        for merge in effects.merges:
            record = flat(merge)
            await self.out.send(self.output_topic, "ProfileMerge", record, key=merge.loser)
            await self.out.send(topics.MERGES, "ProfileMerge", record, key=merge.loser)
        for warning in effects.warnings:
            record = flat(warning) | {"warning_id": warning.warning_id}
            await self.out.send(
                topics.IDENTITY_WARNINGS, "IdentityWarning", record, key=warning.warning_id
            )

    def downstream(self) -> tuple[str, ...]:
        return (topics.RESOLVED,)


class JourneyStage(Stage):
    input_topic = topics.RESOLVED
    output_topic = topics.RESOLVED
    upstream_topic = topics.IDENTITY
    loop = True
    idle_inputs = False

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        outbox: Outbox,
        control: Table,
        profiles: RawTable,
    ) -> None:
        super().__init__(settings, codec, outbox, control)
        self.profiles = profiles
        self.current: tuple[str, dict[str, Any], bytes, dict[str, Any]] | None = None
        """The touchpoint being handled: its event id, its record, and its touchpoint in Avro and
        other fields as they are kept (its own placement needs no lookup)."""
        self.core = JourneyCore(self.rules)
        self.timers: dict[int, Timers] = {}
        """Per partition this process handles: when time alone changes each profile."""
        self.offsets: dict[int, int] = {}
        """Per partition: the offset of the input record being handled."""
        self._recent_states: OrderedDict[str, tuple[bytes, ProfileState]] = OrderedDict()
        """The last profiles saved, with the value saved: reading a profile back from its JSON
        costs as much as the rest of handling an event (newest last)."""
        self._dirty: dict[str, tuple[ProfileState, int, int]] = {}
        """The profiles saved while handling the current message (state, partition, offset),
        written to the table once it is handled: a frame often holds several events of one
        customer, and each write sends the whole profile to the changelog."""
        self._unkept: dict[str, str] = {}
        """Events pruned while handling the current message, and whose profile pruned them:
        their records are deleted once the profiles are written."""
        self._handling: list[str] = []
        """The profiles loaded while handling the current record."""
        self._transferred: dict[int, dict[str, int]] = {}
        """Per partition: profiles merged away whose state was sent to their survivor, with the
        outbox's mark after the send; once the broker has it, the state shrinks to a stub."""

    def load(self, profile: str) -> ProfileState:
        self._handling.append(profile)
        dirty = self._dirty.get(profile)
        if dirty is not None:
            state = dirty[0]
        else:
            raw = self.profiles.get(profile)
            state = self._decoded(profile, raw) if raw else ProfileState(profile)
        # Versions follow the wall clock as well as the state: after a crash the restored state
        # can be older than outputs its last owner already published, and what is published
        # now must replace those.
        state.version = max(state.version, wall_ms() * 1000)
        return state

    async def handle(self, value: bytes, source: Source) -> None:
        # A journey's summary leaves once per message, like its profile's state: the events of
        # one journey in a frame each changed it (42% of the summaries on a generated day).
        self.out.hold()
        try:
            await super().handle(value, source)
            self.shrink_merged(source.partition)
        finally:
            self.out.release()
            self.write_back()

    async def handle_record(self, value: bytes, source: Source, where: str) -> None:
        self._handling = []
        await super().handle_record(value, source, where)

    def on_failure(self) -> None:
        """The profiles the failed record loaded go back to what the table holds: what the
        message's earlier records did to them goes too (their outputs have left), which is
        better than keeping a state a bug left half-changed."""
        for profile in self._handling:
            self._dirty.pop(profile, None)
            self._recent_states.pop(profile, None)

    def _decoded(
        self, profile: str, raw: bytes, data: dict[str, Any] | None = None
    ) -> ProfileState:
        """``profile``'s state from the table's ``raw`` value (``data``: it decoded): the state
        this process saved last, if the table still holds what it saved (a restore or another
        owner's write makes a new value), else decoded. Taken out while it is handled: a record
        that fails half-way leaves nothing here to be reused."""
        recent = self._recent_states.pop(profile, None)
        if recent is not None and recent[0] is raw:
            return recent[1]
        return ProfileState.from_json(orjson.loads(raw) if data is None else data)

    def _keep_recent(self, state: ProfileState, saved: bytes) -> None:
        self._recent_states[state.profile_id] = (saved, state)
        if len(self._recent_states) > RECENT_STATES:
            self._recent_states.popitem(last=False)

    async def dispatch(self, kind: str, record: dict[str, Any], raw: bytes, source: Source) -> None:
        self.offsets[source.partition] = source.offset
        if kind not in _PROFILE_CHANGES:  # time, rounds, a takeover: they read the table
            self.out.send_held()
            self.write_back()
        await super().dispatch(kind, record, raw, source)

    async def on_take_over(self, partition: int, resumed_at: int) -> None:
        """Publish again the profiles the last owner saved while handling records from
        ``resumed_at`` on: their outputs may have died with it (faust sends table changes at
        once but flushes outputs only before it commits). Every profile saved before it had its
        outputs flushed when that offset was committed, so it only gets its wake-up time back."""
        self.write_back()
        timers = self.timers[partition] = Timers()
        self.offsets[partition] = resumed_at
        # Merges from the resumed offset on come again, and send their states again.
        self._transferred.pop(partition, None)
        for key, raw in list(self.profiles.items()):
            if key.startswith(RECORD_KEY):
                continue
            data = _value(raw)
            if data is None or data.get("partition") != partition:
                continue
            if data.get("merged_into"):
                if data.get("events") and data.get("offset", resumed_at) < resumed_at:
                    self.shrink(key, partition)  # its merge was committed, so its state sent
                continue
            if data.get("offset", resumed_at) < resumed_at:
                timers.set(key, self.core.wakes_at(data.get("wake") or {}))
                continue
            state = self.load(key)
            await self.publish(self.core.republish(state))
            self.save(state, partition)

    def save(self, state: ProfileState, partition: int, pruned: Sequence[str] = ()) -> None:
        """``pruned``: events the profile no longer holds; their records are deleted after it is
        written, so a profile restored from the changelog never lacks one of its records. The
        table gets the profile when the message is handled (:meth:`write_back`)."""
        # The input offset that caused this save: a worker taking the partition over republishes
        # only what was saved at or after the offset it resumes from.
        self._dirty[state.profile_id] = (state, partition, self.offsets.get(partition, -1))
        for event_id in pruned:
            self._unkept[event_id] = state.profile_id

    def write_back(self) -> None:
        """Write the profiles saved since the last call to the table, once each, with their
        wake-up times, then delete the records of the events they pruned."""
        dirty, self._dirty = self._dirty, {}
        for state, partition, offset in dirty.values():
            wake = self.core.wake(state)
            placed = {"partition": partition, "wake": wake, "offset": offset}
            saved = orjson.dumps(state.to_json() | placed)
            self.profiles[state.profile_id] = saved
            self._keep_recent(state, saved)
            at = None if state.merged_into else self.core.wakes_at(wake)
            self.timers.setdefault(partition, Timers()).set(state.profile_id, at)
        unkept, self._unkept = self._unkept, {}
        for event_id, profile in unkept.items():
            holder = dirty.get(profile)
            if holder is not None and event_id in holder[0].events:
                continue  # pruned, then back in the same message (a late duplicate)
            # ``del``, not ``pop``: faust's table sends a tombstone only from ``__delitem__``.
            if RECORD_KEY + event_id in self.profiles:
                del self.profiles[RECORD_KEY + event_id]

    def time(self, partition: int) -> tuple[int | None, bool]:
        """The watermark the core works with: at the end of a run, the run's (everything has
        come); otherwise the one at which the last closed epoch's horizon is reached."""
        clock = self.clock(partition)
        clock.current()
        if clock.finished:
            return clock.floor, True
        closed = self.closed_horizon(partition)
        return (None if closed is None else self.rules.watermark_at(closed)), False

    async def on_closed(self, partition: int, horizon: int) -> None:
        await self.scan(partition)

    async def scan(self, partition: int) -> None:
        """Time passed: expire journeys and fire drop-offs (only the profiles whose saved
        wake-up time has come are loaded)."""
        watermark, finished = self.time(partition)
        if watermark is None:
            return
        timers = self.timers.setdefault(partition, Timers())
        # The end of a run fires what the allowed lateness still held back: look at every one.
        woken = timers.waiting() if finished else timers.due(watermark)
        for profile in woken:
            raw = self.profiles.get(profile)
            data = _value(raw)
            if data is None or data.get("partition") != partition or data.get("merged_into"):
                continue
            if not self.core.is_due(data.get("wake") or {}, watermark, finished=finished):
                timers.set(profile, self.core.wakes_at(data.get("wake") or {}))
                continue
            state = self._decoded(profile, raw or b"", data)
            outputs = self.core.advance(state, watermark, finished=finished)
            if outputs:
                await self.publish(outputs)
            self.save(state, partition, outputs.pruned)

    async def on_finished(self, partition: int) -> None:
        await self.scan(partition)

    async def on_record(
        self, kind: str, record: dict[str, Any], raw: bytes, source: Source
    ) -> None:
        if kind == "ResolvedTouchpoint":
            await self.on_touchpoint(record, raw, source)
        elif kind == "ProfileMerge":
            await self.on_merge(record["loser"], record["survivor"], record["occurred_at"], source)
        elif kind == "ProfileTransfer":
            state = orjson.loads(record["state"])
            records = state.pop("records", {})
            loser = ProfileState.from_json(state)
            await self.on_transfer(
                record["survivor"], loser, records, record["occurred_at"], source
            )
        else:
            await super().on_record(kind, record, raw, source)

    async def on_touchpoint(self, record: dict[str, Any], raw: bytes, source: Source) -> None:
        state = self.load(record["profile_id"])
        if state.merged_into:
            self.touched(source.partition)
            forwarded = record | {"profile_id": state.merged_into}
            await self.out.send(
                self.input_topic, "ResolvedTouchpoint", forwarded, key=state.merged_into
            )
            self.loop_sent(source.partition, epoch_ms(record["touchpoint"]["occurred_at"]) or 0)
            return
        # Counted where it is applied: an event forwarded to its survivor counts once.
        self.events_in.inc()
        touchpoint = record["touchpoint"]
        occurred_at = epoch_ms(touchpoint["occurred_at"]) or 0
        facts = facts_of(touchpoint, occurred_at)
        encoded, fields = kept_parts(self.codec, record)
        self.keep_record(facts.event_id, keepable(encoded, fields))
        identities = touchpoint["identities"].items()
        state.learn_identities({k: v for k, v in identities if not is_blocklisted(v)}, occurred_at)
        watermark, finished = self.time(source.partition)
        self.current = (facts.event_id, record, encoded, fields)
        try:
            outputs = self.core.add(state, facts, watermark, finished=finished)
            await self.publish(outputs)
        finally:
            self.current = None
        self.save(state, source.partition, outputs.pruned)

    def keep_record(self, event_id: str, kept: Kept) -> None:
        # Once: a duplicate of the event (or a repeated transfer) sends no changelog record.
        key = RECORD_KEY + event_id
        if _absent(self.profiles.get(key)):  # checked without decoding: once per event
            self.profiles[key] = orjson.dumps(kept)

    def stored(self, event_id: str) -> tuple[bytes, dict[str, Any]]:
        """The ``ResolvedTouchpoint`` record event ``event_id`` came in: its touchpoint in Avro
        (see ``Codec.encode_with_first``), and its other fields (not to be mutated)."""
        if self.current is not None and self.current[0] == event_id:
            return self.current[2], self.current[3]
        kept: Kept | None = _value(self.profiles.get(RECORD_KEY + event_id))
        if kept is None:
            raise StateError("no record kept for this event", table="profiles", key=event_id)
        if isinstance(kept, str):  # kept whole, before touchpoints were kept apart
            record = self.codec.decode_as(RESOLVED, base64.b64decode(kept))
            touchpoint = record.pop("touchpoint")
            return self.codec.encode_first(RESOLVED, touchpoint), record
        return base64.b64decode(kept["touchpoint"]), kept["fields"]

    async def on_merge(self, loser: str, survivor: str, cause: int, source: Source) -> None:
        """Send ``loser``'s state to the survivor. Each time a merge for it comes (the identity
        stage sends one per relabelled identity, and a redelivery after a crash comes again), the
        state is sent again: the transfer of a killed worker may never have left, and the
        survivor absorbs a repeated one without a trace."""
        if loser == survivor:
            return
        state = self.load(loser)
        state.merged_into = state.merged_into or survivor
        if state.events:
            await self.transfer(state, state.merged_into, cause, source)
            transferred = self._transferred.setdefault(source.partition, {})
            transferred.pop(loser, None)  # marks stay in increasing order
            transferred[loser] = self.out.mark()
        self.save(state, source.partition)

    async def tick(self) -> None:
        await super().tick()
        # A quiet partition is sent a Tick once the broker has a merged profile's state: a
        # timer cannot write tables, and the profile shrinks after a message is handled.
        for partition, transferred in self._transferred.items():
            if not transferred or partition in self.nudged or not self.owned(partition):
                continue
            if self.out.acknowledged(next(iter(transferred.values()))):
                await self.nudge(partition)

    def shrink_merged(self, partition: int) -> None:
        """Profiles merged away whose state the broker has (it went to their survivor) keep
        only where they went: events still addressed to them are forwarded, and a merge that
        comes again has nothing left to send."""
        transferred = self._transferred.get(partition)
        while transferred:
            loser, mark = next(iter(transferred.items()))
            if not self.out.acknowledged(mark):
                return
            del transferred[loser]
            self.shrink(loser, partition)

    def shrink(self, loser: str, partition: int) -> None:
        state = self.load(loser)
        if state.merged_into and state.events:
            self.save(state.merged_away(state.merged_into), partition)

    async def transfer(
        self, loser: ProfileState, survivor: str, cause: int, source: Source
    ) -> None:
        """Send ``loser``'s whole state to the survivor's partition."""
        self.touched(source.partition)
        records = {
            event_id: orjson.Fragment(kept)  # as it is kept: JSON already
            for event_id in loser.events
            if (kept := self.profiles.get(RECORD_KEY + event_id)) not in (None, b"null")
        }
        record = {
            "loser": loser.profile_id,
            "survivor": survivor,
            "state": orjson.dumps(loser.to_json() | {"records": records}),
            "occurred_at": cause,
        }
        await self.out.send(self.input_topic, "ProfileTransfer", record, key=survivor)
        self.loop_sent(source.partition, cause)

    async def on_transfer(
        self,
        survivor: str,
        loser: ProfileState,
        records: dict[str, Kept],
        cause: int,
        source: Source,
    ) -> None:
        state = self.load(survivor)
        if state.merged_into:
            for event_id, kept in records.items():
                self.keep_record(event_id, kept)
            await self.transfer(loser, state.merged_into, cause, source)
            return
        watermark, finished = self.time(source.partition)
        # A repeated transfer from a loser that published after this profile absorbed it: a
        # worker took the loser's partition over and published it again before its merge came
        # again (the changelog write of ``merged_into`` had died with the last owner). Its rows
        # now carry newer versions than this profile's placements of its events (whatever this
        # profile published since for events of its own), so this profile publishes everything
        # again, as a takeover does (the first transfer places the loser's events anyway).
        repeated = any(event_id in state.events for event_id in loser.events)
        absorbed = state.absorbed.get(loser.profile_id, 0)
        outdone = repeated and loser.last_published() > absorbed
        outputs = self.core.absorb(state, loser, watermark, cause=cause, finished=finished)
        # Only the events the merge brought (history it found settled stays with the loser).
        for event_id, kept in records.items():
            if event_id in state.events:
                self.keep_record(event_id, kept)
        await self.publish(outputs)
        if outdone:
            await self.publish(self.core.republish(state))
            state.absorbed = dict.fromkeys(state.absorbed, state.version)  # all placed again
        if outdone or not repeated:
            # The loser's events, and those of the profiles it had absorbed, are placed here
            # from this version on (unless an earlier transfer had placed them already).
            for name in (loser.profile_id, *loser.absorbed):
                state.absorbed.setdefault(name, state.version)
        self.save(state, source.partition, outputs.pruned)

    def downstream(self) -> tuple[str, ...]:
        return tuple(str(name) for name in topics.SINK_INPUTS)

    async def publish(self, outputs: Outputs) -> None:
        for summary in outputs.journeys:
            record, profile = summary.to_json(), summary.profile_id
            await self.out.send_latest(
                topics.JOURNEYS, "Journey", record, key=profile, about=summary.journey_id
            )
        for assignment in outputs.assignments:
            touchpoint, fields = self.stored(assignment.event.event_id)
            placed = (
                assignment.profile_id,
                assignment.journey_id,
                assignment.session_id,
                assignment.version,
                assignment.event.late,
            )
            placement = fields | dict(zip(PLACEMENT_FIELDS, placed, strict=True))
            value = self.codec.encode_with_first(RESOLVED, touchpoint, placement)
            await self.out.send_raw(topics.STITCHED, value, key=assignment.profile_id)
            self.events_out.inc()
        await self.publish_detections(outputs)

    def payload_of(self, event: EventFacts) -> dict[str, Any]:
        if self.current is not None and self.current[0] == event.event_id:
            touchpoint: dict[str, Any] = self.current[1]["touchpoint"]
        else:
            touchpoint = self.codec.decode_first(RESOLVED, self.stored(event.event_id)[0])
        return touchpoint

    async def publish_detections(self, out: Outputs) -> None:
        profile = out.profile_id
        for pivot in out.pivots:
            record = pivot_record(pivot, profile, out.version, retracted=False)
            await self.out.send(topics.PIVOTS, "Pivot", record, key=profile)
        for pivot in out.retracted_pivots:
            record = pivot_record(pivot, profile, out.version, retracted=True)
            await self.out.send(topics.PIVOTS, "Pivot", record, key=profile)
        for handoff in out.handoffs:
            record = handoff_record(handoff, out.version, self.payload_of)
            await self.out.send(topics.HANDOFFS, "Handoff", record, key=profile)
        for fired in out.dropoffs:
            record = dropoff_record(fired, profile, out.version)
            await self.out.send(topics.DROPOFFS, "Dropoff", record, key=profile)
        for fired in out.followups:
            record = followup_record(
                fired, profile, out.version, out.identities[fired.followup_id], self.payload_of
            )
            await self.out.send(topics.followups(fired.kind), "Followup", record, key=profile)


_PROFILE_CHANGES = frozenset({"ResolvedTouchpoint", "ProfileMerge", "ProfileTransfer"})
"""The journey stage's data records: they read profiles through ``load``, which sees the ones
saved but not yet written."""


RESOLVED = "ResolvedTouchpoint"

Kept = dict[str, Any] | str
"""A kept record: ``{"touchpoint": its touchpoint in Avro (base64), about half the size of its
JSON (what an event keeps is most of a profile's bytes), "fields": its other fields but those a
placement sets}``; a state saved before touchpoints were kept apart holds the whole record in
Avro (base64)."""

PLACEMENT_FIELDS = ("profile_id", "journey_id", "session_key", "version", "late")
"""The fields of a ``ResolvedTouchpoint`` that each placement sets (``JourneyStage.publish``)."""


def kept_parts(codec: Codec, record: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """A ``ResolvedTouchpoint``'s touchpoint in Avro, and its fields a placement does not set
    (times as epoch ms, as JSON keeps them)."""
    fields = {
        key: epoch_ms(value) if isinstance(value, datetime) else value
        for key, value in record.items()
        if key != "touchpoint" and key not in PLACEMENT_FIELDS
    }
    return codec.encode_first(RESOLVED, record["touchpoint"]), fields


def keepable(touchpoint: bytes, fields: dict[str, Any]) -> dict[str, Any]:
    """How the profiles table keeps a record (see ``Kept``), from :func:`kept_parts`."""
    return {"touchpoint": base64.b64encode(touchpoint).decode(), "fields": fields}


def _where(source: Source) -> tuple[str, int, int]:
    return source.topic, source.partition, source.offset
