"""The stages' control logic with in-process fakes of the outbox and the tables."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from parcours.schemas.codec import Codec
from parcours.schemas.records import Source
from parcours.schemas.sdk import parse_touchpoint
from parcours.schemas.settings import Settings
from parcours.streams import stages
from parcours.streams.clock import Announce, EndOfRun
from parcours.streams.facts import EventFacts, facts_of
from parcours.streams.journey import ProfileState
from parcours.streams.stages import RECORD_KEY, IdentityStage, JourneyStage

from tests.factories import touchpoint


class FakeOutbox:
    """Records what a stage sends; every topic has ``partitions`` partitions. The broker has
    what was sent before the last :meth:`flush`."""

    def __init__(self, partitions: int = 2) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self._partitions = partitions
        self.flushes = 0

    def partitions(self, name: str) -> int:
        return self._partitions

    def mark(self) -> int:
        return self.flushes + 1

    def acknowledged(self, mark: int) -> bool:
        return self.flushes >= mark

    async def flush(self) -> None:
        self.flushes += 1

    def hold(self) -> None: ...

    def release(self) -> None: ...

    def send_held(self) -> None: ...

    async def everywhere(self, name: str, schema: str, record: dict[str, Any]) -> None:
        self.sent.append((name, schema, record))

    async def to_partition(
        self, name: str, schema: str, record: dict[str, Any], partition: int
    ) -> None:
        self.sent.append((name, schema, record))


def saved(table: Any, key: str) -> Any:
    """What the journey stage's table holds for ``key``, decoded (it keeps JSON bytes)."""
    return orjson.loads(table[key])


def identity_stage(control: dict[str, dict[str, Any]]) -> IdentityStage:
    settings = Settings(watermark_idle_seconds=30)
    return IdentityStage(settings, Codec(), FakeOutbox(), control, {})  # type: ignore[arg-type]


def test_a_worker_restarted_after_a_replay_keeps_time_at_the_runs_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [1_800_000_000_000]
    monkeypatch.setattr(stages, "wall_ms", lambda: wall[0])
    control: dict[str, dict[str, Any]] = {}
    first = identity_stage(control)
    asyncio.run(first.finish("run-1", 0, 7_000))
    assert [schema for _, schema, _ in first.out.sent] == ["Marker"]  # type: ignore[attr-defined]

    wall[0] += 3_600_000  # an hour later, a new process takes the partition from the changelog
    restarted = identity_stage(control)
    assert restarted.clock(0).current() == 7_000

    restarted.observe(0, 1, wall[0])  # a live event: idleness applies again
    assert "identity-settled:0" not in control
    wall[0] += 30_000
    restarted.observe(0, 1, wall[0])
    assert restarted.clock(0).current() == wall[0]  # input 0 is idle, input 1 is live


def test_a_new_owner_announces_again_the_rounds_its_last_owner_was_in_and_the_runs_it_ended() -> (
    None
):
    """The last owner recorded that run ``r-1`` started on task 1 and died before its round-0
    announcement left (the other tasks waited for it forever), and had ended run ``r-0`` before
    its markers to the next stage left. The redelivered marker changes nothing on its own."""
    tasks = 2
    end = EndOfRun(1, tasks)
    for source in range(tasks):
        end.input_done("r-0", source, tasks, 5_000)
    for task in range(tasks):
        end.vote(Announce("r-0", 0, task, False, 5_000))
    end.input_done("r-1", 0, tasks, 9_000)
    started = end.input_done("r-1", 1, tasks, 9_000)
    assert started is not None  # sent by the last owner, lost with it
    control: dict[str, Any] = {"identity:1": end.to_json()}

    stage = identity_stage(control)
    asyncio.run(stage.take_over(1, resumed_at=0))
    sent = stage.out.sent  # type: ignore[attr-defined]
    rounds = [r for _, schema, r in sent if schema == "RunRound"]
    assert rounds == [{"run_id": "r-1", "round": 0, "task": 1, "active": True, "watermark": 9_000}]
    markers = [(name, r["run_id"]) for name, schema, r in sent if schema == "Marker"]
    assert markers == [(stages.topics.RESOLVED, "r-0")]


class RecordingOutbox(FakeOutbox):
    async def send(
        self, name: str, schema: str, record: dict[str, Any], *, key: str | None = None
    ) -> None:
        self.sent.append((name, schema, record))

    async def send_latest(
        self, name: str, schema: str, record: dict[str, Any], *, key: str, about: str
    ) -> None:
        await self.send(name, schema, record, key=key)

    async def send_raw(self, name: str, value: bytes, *, key: str | None = None) -> None:
        """An encoded record, decoded as its consumers would."""
        schema, record = Codec().decode(value)
        self.sent.append((name, schema.rsplit(".", 1)[-1], record))


def journey_stage(profiles: dict[str, Any]) -> JourneyStage:
    stage = JourneyStage(Settings(), Codec(), RecordingOutbox(), {}, profiles)  # type: ignore[arg-type]
    return stage


def test_a_takeover_republishes_only_what_was_saved_from_the_resumed_offset_on() -> None:
    """The last owner saved profile ``a`` handling offset 4 and ``b`` handling offset 12, and
    committed offset 10: ``a``'s outputs were flushed before that commit, ``b``'s may be lost.
    The new owner publishes ``b`` again and only puts ``a``'s wake-up time back."""
    profiles: dict[str, Any] = {}
    last_owner = journey_stage(profiles)
    for name, offset in (("a", 4), ("b", 12)):
        state = ProfileState(name)
        facts, raw = cart_event(f"ev-{name}")
        last_owner.keep_record(facts.event_id, base64.b64encode(raw).decode())
        last_owner.core.add(state, facts, None)
        last_owner.offsets[0] = offset
        last_owner.save(state, 0)
        last_owner.write_back()  # the message is handled

    new_owner = journey_stage(profiles)
    asyncio.run(new_owner.on_take_over(0, resumed_at=10))
    new_owner.write_back()

    republished = {record["profile_id"] for _, schema, record in new_owner.out.sent}  # type: ignore[attr-defined]
    assert republished == {"b"}
    assert sorted(new_owner.timers[0].at) == ["a", "b"]
    assert saved(profiles, "b")["offset"] == 10 and saved(profiles, "a")["offset"] == 4


class RecordingTable(dict[str, Any]):
    """Remembers the keys written, in order (the order of their changelog records)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append("del " + key)
        super().__delitem__(key)


def deliver(stage: JourneyStage, kind: str, record: dict[str, Any], raw: bytes, at: Source) -> None:
    """One record as one message: the stage writes the profiles it saved once it is handled."""
    asyncio.run(stage.on_record(kind, record, raw, at))
    stage.write_back()


def resolved_cart(event_id: str, profile: str) -> tuple[dict[str, Any], bytes]:
    codec = Codec()
    _, raw = cart_event(event_id)
    record = codec.decode_as("ResolvedTouchpoint", raw) | {"profile_id": profile}
    return record, codec.encode("ResolvedTouchpoint", record)


def test_an_event_record_is_kept_once_beside_the_profile_and_travels_with_a_merge() -> None:
    """The record an event came in is kept once by event id (a duplicate writes nothing), not in
    the profile saved at every change, and before that profile in the changelog (a profile
    restored after a crash never lacks it); a profile merged away takes its records to the
    survivor, whose worker may hold another partition, and the survivor places the event with
    them."""
    table = RecordingTable()
    loser_side = journey_stage(table)
    record, raw = resolved_cart("ev-1", "p-loser")
    source = Source(stages.topics.RESOLVED, 0, 7, 0)
    for _ in range(2):  # a redelivery
        deliver(loser_side, "ResolvedTouchpoint", record, raw, source)
    kept = RECORD_KEY + "ev-1"
    assert table.writes == [kept, "p-loser", "p-loser"]
    touchpoint = base64.b64decode(saved(table, kept)["touchpoint"])
    assert Codec().decode_first("ResolvedTouchpoint", touchpoint) == record["touchpoint"]
    assert saved(table, kept)["fields"] == {  # what a placement does not set; times as epoch ms
        "routing_key": "c-1",
        "produced_at": 0,
        "source_partition": 0,
        "source_offset": 0,
    }
    assert b"winter-sale" not in table["p-loser"]

    asyncio.run(loser_side.on_merge("p-loser", "p-survivor", 0, source))
    loser_side.write_back()
    [(_, schema, transfer)] = [m for m in loser_side.out.sent if m[1] == "ProfileTransfer"]  # type: ignore[attr-defined]

    survivor_side = journey_stage(RecordingTable())
    deliver(survivor_side, schema, transfer, b"", Source("t", 1, 3, 0))
    [placed] = [r for _, kind, r in survivor_side.out.sent if kind == "ResolvedTouchpoint"]  # type: ignore[attr-defined]
    assert placed["profile_id"] == "p-survivor"
    assert placed["touchpoint"] == record["touchpoint"]
    assert placed["touchpoint"]["attributes"]["campaign"] == "winter-sale"
    assert survivor_side.profiles.writes[0] == kept  # type: ignore[attr-defined]
    assert survivor_side.profiles[kept] == table[kept]


def cart_event(event_id: str) -> tuple[EventFacts, bytes]:
    """The facts of a received cart event, and the record the stage keeps to re-place it."""
    record, raw = resolved(
        None,
        event_id=event_id,
        action="add_to_cart",
        identities={"crm_id": "c-1"},
        attributes={"campaign": "winter-sale"},
    )
    return facts_of(record["touchpoint"], 1_790_000_000_000), raw


def resolved(profile: str | None, **changes: Any) -> tuple[dict[str, Any], bytes]:
    """A ``ResolvedTouchpoint`` for ``profile`` of a touchpoint with ``changes``, and its bytes."""
    record = {
        "touchpoint": parse_touchpoint(touchpoint(**changes)).to_avro(),
        "profile_id": profile,
        "journey_id": None,
        "routing_key": "c-1",
        "produced_at": 0,
        "source_partition": 0,
        "source_offset": 0,
    }
    return record, Codec().encode("ResolvedTouchpoint", record)


def test_a_followup_carries_the_identities_the_profile_had_at_its_deadline() -> None:
    """The cart's deadline is 11:00; an e-mail the customer gave at 12:00 is not on the
    follow-up, however far processing had run ahead when it fired."""
    stage = journey_stage({})
    cart = {"cart_id": "c1", "items": [{"sku": "s", "quantity": 1, "unit_price": 9.0}]}
    events = (
        {"event_id": "e-1", "action": "add_to_cart", "cart": cart, "occurred_at": "10:00"},
        {"event_id": "e-2", "identities": {"email_sha256": "a" * 64}, "occurred_at": "12:00"},
    )
    for offset, event in enumerate(events):
        at = f"2026-11-24T{event.pop('occurred_at')}:00+00:00"
        fields = {"identities": {"crm_id": "c-1"}, "occurred_at": at} | event
        record, raw = resolved("p", **fields)
        asyncio.run(stage.on_record("ResolvedTouchpoint", record, raw, Source("t", 0, offset, 0)))
    state = stage.load("p")
    assert state.identities_at(2**62) == {"crm_id": ["c-1"], "email_sha256": ["a" * 64]}
    asyncio.run(stage.publish(stage.core.advance(state, 1_900_000_000_000, finished=True)))
    [followup] = [r for _, kind, r in stage.out.sent if kind == "Followup"]  # type: ignore[attr-defined]
    assert followup["identities"] == {"crm_id": ["c-1"]}


def test_a_pruned_touchpoint_leaves_the_profile_and_its_kept_record_goes_too() -> None:
    """A visit in November and one in January: once time is past the retention after the first,
    its record is no longer kept and the saved profile holds only the second."""
    stage = journey_stage(RecordingTable())
    for offset, (event_id, at) in enumerate((("e-1", "2026-11-02"), ("e-2", "2027-01-10"))):
        fields = {"event_id": event_id, "occurred_at": f"{at}T10:00:00+00:00"}
        record, raw = resolved("p", **fields)
        deliver(stage, "ResolvedTouchpoint", record, raw, Source("t", 0, offset, 0))
    assert RECORD_KEY + "e-1" in stage.profiles
    state = stage.load("p")
    outputs = stage.core.advance(state, 1_800_000_000_000)
    asyncio.run(stage.publish(outputs))
    stage.save(state, 0, outputs.pruned)
    assert RECORD_KEY + "e-1" in stage.profiles  # until the profile without it is written
    stage.write_back()
    # The profile without the event is written first: a restored profile never lacks a record.
    assert stage.profiles.writes[-2:] == ["p", "del " + RECORD_KEY + "e-1"]  # type: ignore[attr-defined]
    assert RECORD_KEY + "e-1" not in stage.profiles and RECORD_KEY + "e-2" in stage.profiles
    assert [e["event_id"] for e in saved(stage.profiles, "p")["events"]] == ["e-2"]
    assert [j["touchpoints"] for j in saved(stage.profiles, "p")["archived"]] == [1]


class RawOutbox(RecordingOutbox):
    async def send_raw(self, name: str, value: bytes, *, key: str | None = None) -> None:
        self.sent.append((name, "raw", {"value": value, "key": key}))


def test_a_frame_of_touchpoints_is_ingested_in_order_and_a_bad_item_is_dead_lettered_alone() -> (
    None
):
    codec = Codec()
    events = [
        codec.encode("Touchpoint", parse_touchpoint(touchpoint(event_id=f"e-{n}")).to_avro())
        for n in range(3)
    ]
    frame = codec.frame([events[0], b"\x00not avro", events[2]])
    stage = stages.IngestStage(Settings(), codec, RawOutbox(), {})  # type: ignore[arg-type]
    asyncio.run(stage.handle(frame, Source(stages.topics.TOUCHPOINTS, 0, 41, 0)))

    forwarded = [
        codec.decode_as("ResolvedTouchpoint", record["value"])["touchpoint"]["event_id"]
        for name, schema, record in stage.out.sent  # type: ignore[attr-defined]
        if name == stages.topics.IDENTITY and schema == "raw"
    ]
    assert forwarded == ["e-0", "e-2"]
    [dead] = [
        codec.decode_as("DeadLetter", record["value"])
        for name, _, record in stage.out.sent  # type: ignore[attr-defined]
        if name == stages.topics.DEAD_LETTERS
    ]
    assert dead["reason"].startswith("item 1: not a parcours Avro record")
    assert (dead["offset"], dead["payload"]) == (41, b"\x00not avro")


def test_a_frame_on_an_internal_topic_is_handled_item_by_item() -> None:
    """A stage applies a frame's records in their order; a record it cannot read is
    dead-lettered with its place in the frame and does not stop the others."""
    codec = Codec()
    profiles: dict[str, Any] = {}
    stage = journey_stage(profiles)
    first, second = (resolved_cart(f"ev-{n}", "p-1")[1] for n in (1, 2))
    frame = codec.frame([first, codec.encode("Tick", {"task": 0})[:-1] + b"\xff\xff", second])
    asyncio.run(stage.handle(frame, Source(stages.topics.RESOLVED, 0, 9, 0)))

    assert ProfileState.from_json(saved(profiles, "p-1")).events.keys() == {"ev-1", "ev-2"}
    [dead] = [record for name, _, record in stage.out.sent if name == stages.topics.DEAD_LETTERS]  # type: ignore[attr-defined]
    assert dead["reason"].startswith("item 1: SchemaError") and dead["offset"] == 9


def frame_of(*records: bytes) -> bytes:
    return Codec().frame(list(records))


def event_for(profile: str, event_id: str) -> bytes:
    return resolved(profile, event_id=event_id, identities={"crm_id": f"c-{profile}"})[1]


def test_a_profile_is_written_once_per_message_after_the_records_of_its_events() -> None:
    table = RecordingTable()
    stage = journey_stage(table)
    frame = frame_of(event_for("p", "e-1"), event_for("q", "e-2"), event_for("p", "e-3"))
    asyncio.run(stage.handle(frame, Source(stages.topics.RESOLVED, 0, 5, 0)))

    kept = [RECORD_KEY + e for e in ("e-1", "e-2", "e-3")]
    assert table.writes == [*kept, "p", "q"]
    assert ProfileState.from_json(saved(table, "p")).events.keys() == {"e-1", "e-3"}
    assert saved(table, "p")["offset"] == saved(table, "q")["offset"] == 5
    placed = [
        r["touchpoint"]["event_id"] for _, kind, r in stage.out.sent if kind == "ResolvedTouchpoint"
    ]  # type: ignore[attr-defined]
    assert placed == ["e-1", "e-2", "e-3"]


def test_a_record_that_fails_half_way_leaves_its_profile_as_the_table_holds_it() -> None:
    """A bug that raises after changing the profile: the record is dead-lettered, the profile
    goes back to what the last message wrote (the earlier records of this message that touched
    it go too; others are kept), and the next message finds it whole. A value the table got
    otherwise (a restore, another owner) is read from the table, not from what was kept decoded."""
    profiles: dict[str, Any] = {}
    stage = journey_stage(profiles)
    first = frame_of(event_for("p", "e-1"), event_for("p", "e-2"))
    asyncio.run(stage.handle(first, Source(stages.topics.RESOLVED, 0, 1, 0)))

    add = stage.core.add

    def half_way(state: ProfileState, facts: EventFacts, *args: Any, **kwargs: Any) -> Any:
        if facts.event_id == "e-4":
            state.events.clear()
            raise RuntimeError("a bug")
        return add(state, facts, *args, **kwargs)

    stage.core.add = half_way  # type: ignore[method-assign]
    second = frame_of(event_for("p", "e-3"), event_for("q", "e-5"), event_for("p", "e-4"))
    asyncio.run(stage.handle(second, Source(stages.topics.RESOLVED, 0, 2, 0)))
    [dead] = [r for name, _, r in stage.out.sent if name == stages.topics.DEAD_LETTERS]  # type: ignore[attr-defined]
    assert dead["reason"] == "item 2: internal error RuntimeError: a bug"
    assert stage.load("p").events.keys() == {"e-1", "e-2"}
    assert ProfileState.from_json(saved(profiles, "q")).events.keys() == {"e-5"}

    stage.core.add = add  # type: ignore[method-assign]
    restored = ProfileState.from_json(saved(profiles, "p"))
    asyncio.run(stage.handle(event_for("p", "e-6"), Source(stages.topics.RESOLVED, 0, 3, 0)))
    assert ProfileState.from_json(saved(profiles, "p")).events.keys() == {"e-1", "e-2", "e-6"}
    profiles["p"] = orjson.dumps(restored.to_json() | {"partition": 0, "offset": 1})
    assert stage.load("p").events.keys() == {"e-1", "e-2"}


def with_a_cart(profile: str) -> tuple[JourneyStage, ProfileState]:
    """A journey stage, and a profile of its partition that holds a cart event ``ev-1``."""
    stage = journey_stage({})
    state = ProfileState(profile)
    facts, raw = cart_event("ev-1")
    stage.keep_record(facts.event_id, base64.b64encode(raw).decode())
    stage.core.add(state, facts, None)
    return stage, state


def placed_by_transfer(
    stage: JourneyStage, survivor: str, loser: ProfileState
) -> list[dict[str, Any]]:
    """The placements ``survivor`` publishes when ``loser``'s transfer comes, as one message."""
    stage.out.sent.clear()  # type: ignore[attr-defined]
    asyncio.run(stage.on_transfer(survivor, loser, {}, 0, Source(stages.topics.RESOLVED, 0, 1, 0)))
    stage.write_back()
    return [r for _, kind, r in stage.out.sent if kind == "ResolvedTouchpoint"]  # type: ignore[attr-defined]


def test_a_survivor_outdone_by_its_republished_loser_publishes_everything_again() -> None:
    """A worker killed after sending a loser's transfer, before its ``merged_into`` reached the
    changelog: the new owner republishes the loser (its restored state says nothing of the
    merge) with newer versions than the survivor's rows, then the merge comes again and so does
    the transfer. The survivor must publish its rows again, above the loser's, or the loser's
    stale placements win in ClickHouse. A plain repeated transfer changes nothing."""
    stage, loser = with_a_cart("p-loser")
    snapshot = loser.to_json()

    def transfer(state: dict[str, Any]) -> list[dict[str, Any]]:
        return placed_by_transfer(stage, "p-survivor", ProfileState.from_json(state))

    [first] = transfer(snapshot)
    assert first["profile_id"] == "p-survivor"
    assert transfer(snapshot) == []

    republished = ProfileState.from_json(snapshot)
    republished.version = first["version"] + 1000
    loser_rows = stage.core.republish(republished)
    [again] = transfer(republished.to_json())
    assert again["profile_id"] == "p-survivor"
    assert again["version"] > loser_rows.assignments[0].version


def test_a_survivor_outdone_by_its_loser_publishes_again_even_if_it_published_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As above, but the survivor handles an event of its own between the loser's republication
    and the repeated transfer: its newest journey is then newer than the loser's rows, and its
    placement of the loser's event still is not."""
    wall = [1_800_000_000_000]
    monkeypatch.setattr(stages, "wall_ms", lambda: wall[0])
    stage, loser = with_a_cart("p-loser")

    def transfer(state: ProfileState) -> list[dict[str, Any]]:
        return placed_by_transfer(stage, "p-survivor", state)

    [first] = transfer(ProfileState.from_json(loser.to_json()))
    wall[0] += 60_000  # a new owner of the loser's partition republishes it
    republished = ProfileState.from_json(loser.to_json())
    republished.version = wall[0] * 1000
    [stale] = stage.core.republish(republished).assignments
    assert stale.version > first["version"]
    wall[0] += 60_000  # the survivor's own next event
    record, raw = resolved("p-survivor", event_id="ev-2", identities={"crm_id": "c-1"})
    deliver(stage, "ResolvedTouchpoint", record, raw, Source(stages.topics.RESOLVED, 0, 2, 0))
    assert stage.load("p-survivor").last_published() > republished.last_published()

    placed = {r["touchpoint"]["event_id"]: r for r in transfer(republished)}
    assert placed["ev-1"]["profile_id"] == "p-survivor"
    assert placed["ev-1"]["version"] > stale.version


def test_a_repeated_transfer_of_a_profile_absorbed_by_way_of_another_changes_nothing() -> None:
    """``p-a`` merged into ``p-b``, then ``p-b`` into ``p-c``; the identity stage sends a merge
    per relabelled identity, so ``p-a``'s transfer comes again and ``p-b`` forwards it."""
    stage, first = with_a_cart("p-a")

    def transfer(survivor: str, loser: ProfileState) -> list[str]:
        return [r["profile_id"] for r in placed_by_transfer(stage, survivor, loser)]

    assert transfer("p-b", ProfileState.from_json(first.to_json())) == ["p-b"]
    assert transfer("p-c", ProfileState.from_json(stage.load("p-b").to_json())) == ["p-c"]
    assert transfer("p-c", ProfileState.from_json(first.to_json())) == []


def test_a_record_kept_whole_by_an_earlier_version_is_placed_as_before() -> None:
    """State saved before touchpoints were kept apart holds each record whole (Avro, base64)."""
    stage = journey_stage({})
    facts, raw = cart_event("ev-1")
    stage.keep_record(facts.event_id, base64.b64encode(raw).decode())
    state = ProfileState("p")
    asyncio.run(stage.publish(stage.core.add(state, facts, None)))

    [placed] = [r for _, kind, r in stage.out.sent if kind == "ResolvedTouchpoint"]  # type: ignore[attr-defined]
    received = Codec().decode_as("ResolvedTouchpoint", raw)
    assert placed["touchpoint"] == received["touchpoint"]
    assert (placed["profile_id"], placed["routing_key"]) == ("p", received["routing_key"])
    assert placed["journey_id"] and placed["version"] == state.version


def merge_of(loser: str, survivor: str) -> bytes:
    record = {"loser": loser, "survivor": survivor, "identity": "crm_id:c-1", "occurred_at": 0}
    return Codec().encode_internal("ProfileMerge", record)


def test_a_profile_merged_away_keeps_only_its_survivor_once_the_broker_has_its_state() -> None:
    """The identity stage sends a merge per relabelled identity. Until the broker has the
    loser's state (a flush succeeded after it was sent), each merge sends it again: the worker
    may die and its transfer with it. After that the loser keeps only where it went (state stays
    bounded however many profiles merge): a merge sends nothing, an event is forwarded."""
    profiles: dict[str, Any] = {}
    stage = journey_stage(profiles)
    at = iter(range(1, 100))

    def handle(value: bytes) -> list[tuple[str, str, dict[str, Any]]]:
        stage.out.sent.clear()  # type: ignore[attr-defined]
        asyncio.run(stage.handle(value, Source(stages.topics.RESOLVED, 0, next(at), 0)))
        return stage.out.sent  # type: ignore[attr-defined, no-any-return]

    handle(frame_of(event_for("p-loser", "e-1"), event_for("p-loser", "e-2")))
    for _ in range(2):
        [transfer] = [
            r for _, kind, r in handle(merge_of("p-loser", "p-b")) if kind == "ProfileTransfer"
        ]
        assert ProfileState.from_json(orjson.loads(transfer["state"])).events.keys() == {
            "e-1",
            "e-2",
        }
        assert (
            saved(profiles, "p-loser")["events"]
            and saved(profiles, "p-loser")["merged_into"] == "p-b"
        )

    asyncio.run(stage.out.flush())
    handle(event_for("p-other", "e-3"))  # any message on the partition after the flush
    stub = saved(profiles, "p-loser")
    assert (stub["merged_into"], stub["events"], stub["published"], stub["placed"]) == (
        "p-b",
        [],
        [],
        {},
    )
    assert len(orjson.dumps(stub)) < 400
    assert not [
        kind for _, kind, _ in handle(merge_of("p-loser", "p-b")) if kind == "ProfileTransfer"
    ]
    [(_, kind, forwarded)] = handle(event_for("p-loser", "e-4"))
    assert (kind, forwarded["profile_id"]) == ("ResolvedTouchpoint", "p-b")


def test_a_new_owner_shrinks_the_profiles_merged_away_before_the_offset_it_resumes_from() -> None:
    """The last owner died before shrinking its losers: those whose merge it committed had their
    state flushed to the broker first, so the new owner shrinks them; a merge after the committed
    offset comes again and sends the state again, so that loser stays whole until then."""
    profiles: dict[str, Any] = {}
    last_owner = journey_stage(profiles)
    for offset, loser in ((1, "p-a"), (2, "p-b")):
        source = Source(stages.topics.RESOLVED, 0, offset, 0)
        asyncio.run(last_owner.handle(event_for(loser, f"e-{loser}"), source))
    for offset, loser in ((3, "p-a"), (12, "p-b")):
        source = Source(stages.topics.RESOLVED, 0, offset, 0)
        asyncio.run(last_owner.handle(merge_of(loser, "p-c"), source))

    new_owner = journey_stage(profiles)
    asyncio.run(new_owner.on_take_over(0, resumed_at=10))
    new_owner.write_back()
    assert saved(profiles, "p-a")["events"] == [] and saved(profiles, "p-a")["merged_into"] == "p-c"
    assert [e["event_id"] for e in saved(profiles, "p-b")["events"]] == ["e-p-b"]


def test_a_quiet_partition_is_nudged_once_the_broker_has_a_merged_profiles_state() -> None:
    """A timer cannot write tables: when no message comes, the stage sends its task a Tick once
    the state is delivered, and the profile shrinks when the Tick is handled."""
    profiles: dict[str, Any] = {}
    stage = journey_stage(profiles)

    def at(offset: int) -> Source:
        return Source(stages.topics.RESOLVED, 1, offset, 0)

    asyncio.run(stage.handle(event_for("p-loser", "e-1"), at(1)))
    asyncio.run(stage.handle(merge_of("p-loser", "p-b"), at(2)))
    stage.out.sent.clear()  # type: ignore[attr-defined]

    asyncio.run(stage.tick())
    assert stage.out.sent == []  # type: ignore[attr-defined]
    asyncio.run(stage.out.flush())
    asyncio.run(stage.tick())
    asyncio.run(stage.tick())  # once: the first Tick is on its way
    assert stage.out.sent == [(stages.topics.RESOLVED, "Tick", {"task": 1})]  # type: ignore[attr-defined]

    tick = Codec().encode_internal("Tick", {"task": 1})
    asyncio.run(stage.handle(tick, at(3)))
    assert (
        saved(profiles, "p-loser")["events"] == []
        and saved(profiles, "p-loser")["merged_into"] == "p-b"
    )
