"""E-mail addresses and phone numbers are found in any text; ids, times and amounts are not."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parcours.schemas import pii
from parcours.schemas.pii import hash_email, hash_phone

_LOCAL = string.ascii_letters + string.digits + "._+-"
_LABEL = string.ascii_lowercase + string.digits


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.text(_LOCAL, min_size=1, max_size=20).filter(lambda s: s[0].isalnum()))
    labels = draw(st.lists(st.text(_LABEL, min_size=1, max_size=12), min_size=1, max_size=3))
    tld = draw(st.text(string.ascii_letters, min_size=2, max_size=6))
    return f"{local}@{'.'.join(labels)}.{tld}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    digits = st.text(string.digits, min_size=2, max_size=2)
    style = draw(st.sampled_from(["intl", "intl-compact", "french", "nanp", "uk"]))
    if style == "intl":
        country = draw(st.integers(1, 999))
        groups = draw(st.lists(digits, min_size=4, max_size=5))
        separator = draw(st.sampled_from([" ", "-", "."]))
        return f"+{country} {draw(st.integers(1, 9))}{separator}{separator.join(groups)}"
    if style == "intl-compact":
        return f"+{draw(st.integers(1, 9))}{draw(st.text(string.digits, min_size=9, max_size=12))}"
    if style == "french":
        separator = draw(st.sampled_from([" ", "-", "."]))
        groups = draw(st.lists(digits, min_size=4, max_size=4))
        return f"0{draw(st.integers(1, 9))}{separator}{separator.join(groups)}"
    if style == "nanp":
        area = draw(st.integers(200, 999))
        line = f"{draw(st.integers(200, 999))}-{draw(st.integers(0, 9999)):04d}"
        return draw(st.sampled_from([f"({area}) {line}", f"{area}-{line}"]))
    return f"0{draw(st.integers(20, 99))} {draw(st.integers(1000, 9999))} {draw(st.integers(1000, 9999))}"


# Free text around a value: words, punctuation that ends a sentence or opens a bracket.
_words = st.text(string.ascii_letters + " ,;!?", max_size=30)
_before = st.sampled_from(["", " ", "(", ": ", '"', "<"])
_after = st.sampled_from(["", " ", ")", ". ", ", ", '"', ">"])


@settings(max_examples=400)
@given(emails() | phones(), _words, _before, _after, _words)
def test_addresses_and_numbers_in_free_text_are_found_and_redacted(
    value: str, head: str, opens: str, closes: str, tail: str
) -> None:
    text = f"{head} {opens}{value}{closes} {tail}"
    found = pii.find(text)
    assert [text[f.start : f.end] for f in found] == [value]
    redacted = pii.redact(text)
    assert value not in redacted
    assert found[0].digest in redacted


@given(emails())
def test_an_address_hashes_as_the_email_identity(address: str) -> None:
    assert [f.digest for f in pii.find(address.upper())] == [hash_email(address)]


def test_an_international_number_hashes_as_the_phone_identity() -> None:
    for written in ("+33 6 12 34 56 78", "+33-6-12-34-56-78", "+33612345678", "0033 6 12 34 56 78"):
        assert [f.digest for f in pii.find(written)] == [hash_phone("+33612345678")]


def test_an_encoded_at_sign_is_an_address() -> None:
    assert pii.find("to=jane.doe%40example.com")[0].digest == hash_email("jane.doe@example.com")


_timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(lambda t: t.astimezone(timezone(timedelta(hours=t.hour % 14 - 5))))
_ordinary = st.one_of(
    st.integers(0, 10**15).map(str),  # numeric ids, epoch milliseconds
    st.integers(0, 999_999).map(lambda n: f"ord-{n:06d}"),
    st.integers(0, 10**9).map(lambda n: f"c-{n}"),
    st.integers(0, 10**9).map(lambda n: f"cart-2026-{n:09d}"),
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    _timestamps.map(lambda t: t.isoformat()),
    _timestamps.map(lambda t: t.isoformat(timespec="milliseconds").replace("+00:00", "Z")),
    _timestamps.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S")),
    _timestamps.map(lambda t: t.strftime("%d/%m/%Y")),
    _timestamps.map(lambda t: t.strftime("%d.%m.%Y %H:%M")),
    _timestamps.map(lambda t: t.strftime("%Y-%m-%d")),
    st.decimals(0, 10**9, places=2).map(str),
    st.decimals(0, 10**9, places=2).map(lambda d: f"{d:,}"),
    st.decimals(0, 10**9, places=2).map(lambda d: f"+{d}"),
    st.decimals(-(10**6), 10**6, places=2).map(lambda d: f"{d} EUR"),
    st.integers(0, 255).map(lambda n: f"192.168.{n}.{255 - n}"),
    # skus, paths, slugs: they start with a letter (a phone number may start a value)
    st.builds(
        str.__add__,
        st.sampled_from(string.ascii_letters),
        st.text(string.ascii_letters + string.digits + "-_/", max_size=40),
    ),
)


@settings(max_examples=1000)
@given(_ordinary)
def test_ids_times_and_amounts_are_not_flagged(value: str) -> None:
    assert pii.find(value) == []


@pytest.mark.parametrize(
    "value",
    [
        "/cart?step=2",
        "https://shop.example.com/p/SKU-1234?ref=mail",
        "Europe/Paris",
        "2026-11-24T10:02:11.120+01:00",
        "SKU-000123-XL",
        "v1.2.3",
        "order 000123456789",
        "user@localhost",
        "@handle",
    ],
)
def test_everyday_attribute_values_are_not_flagged(value: str) -> None:
    assert pii.find(value) == []


def test_scrub_redacts_raw_bytes_even_when_they_are_not_utf8() -> None:
    raw = b'{"contact": "Jane.Doe@Example.com", "x": "\xff"}'
    scrubbed = pii.scrub(raw)
    assert b"Jane" not in scrubbed and hash_email("jane.doe@example.com").encode() in scrubbed
    assert scrubbed.endswith(b'"\xff"}')
