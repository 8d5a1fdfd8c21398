"""Frames: several records in one Kafka message, in order per partition."""

from __future__ import annotations

import pytest
from parcours.schemas.codec import Codec
from parcours.schemas.errors import SchemaError
from parcours.schemas.frames import FRAME_BYTES, FRAME_ITEMS, Frames, partition_of


def test_a_key_lands_on_the_partition_the_java_client_chooses() -> None:
    """Kafka's own murmur2 test vectors (``UtilsTest.testMurmur2``), as the Java client maps
    them to partitions: a framed record goes where an unframed one went."""
    vectors = {
        "21": -973932308,
        "foobar": -790332482,
        "a-little-bit-long-string": -985981536,
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        "abc": 479470107,
    }
    for key, hashed in vectors.items():
        assert partition_of(key.encode(), 12) == (hashed & 0x7FFFFFFF) % 12


def test_frames_keep_each_partitions_records_in_order_and_apart() -> None:
    codec = Codec()
    frames: Frames[int] = Frames()
    for number in range(6):
        assert frames.add("t", number % 2, f"r{number}".encode(), number) == []
    sent = list(frames.take())
    assert [(f.partition, f.items, f.notes) for f in sent] == [
        (0, [b"r0", b"r2", b"r4"], [0, 2, 4]),
        (1, [b"r1", b"r3", b"r5"], [1, 3, 5]),
    ]
    assert not frames
    assert codec.unframe(sent[0].message(codec)) == [b"r0", b"r2", b"r4"]


def test_a_frame_is_handed_back_full_at_its_item_or_byte_limit() -> None:
    frames: Frames[None] = Frames()
    filled = [frames.add("t", 0, b"x", None) for _ in range(FRAME_ITEMS)]
    assert filled[:-1] == [[]] * (FRAME_ITEMS - 1)
    assert [len(frame.items) for frame in filled[-1]] == [FRAME_ITEMS]
    half = b"h" * (FRAME_BYTES // 2)
    assert frames.add("t", 0, half, None) == []
    # A record that would take the frame over the limit closes it first: no message outgrows
    # what the broker takes because of framing (a record alone over the limit goes alone).
    big = b"b" * FRAME_BYTES
    assert [frame.items for frame in frames.add("t", 0, big, None)] == [[half], [big]]
    assert not frames


def test_take_leaves_the_frames_it_is_told_to_keep() -> None:
    frames: Frames[None] = Frames()
    frames.add("t", 0, b"a", None)
    frames.add("t", 1, b"b", None)
    assert [f.partition for f in frames.take(lambda f: f.partition == 1)] == [0]
    assert [f.partition for f in frames.take()] == [1]


def test_a_single_record_is_sent_as_itself_and_any_record_unframes_to_itself() -> None:
    codec = Codec()
    frames: Frames[None] = Frames()
    record = codec.encode("Tick", {"task": 3})
    frames.add("t", 0, record, None)
    [frame] = frames.take()
    assert frame.message(codec) == record
    assert codec.unframe(record) == [record]
    assert codec.unframe(b"garbage") == [b"garbage"]


def test_a_corrupt_frame_is_a_schema_error() -> None:
    codec = Codec()
    frame = codec.frame([b"a", b"b"])
    with pytest.raises(SchemaError, match="corrupt Avro body"):
        codec.unframe(frame[:-1])
