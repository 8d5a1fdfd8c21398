"""Personal data: how e-mail addresses and phone numbers are recognised, normalised and hashed.

The identities carry them only hashed (``email_sha256``, ``phone_sha256``); anywhere else in an
event (attributes, ids, topics) the SDK's guard finds them with :func:`find` and, by
``PARCOURS_PII_POLICY``, replaces each by the sha256 of its normalised form or refuses the event.
A bare run of digits is taken for an id, not a phone number, unless it starts with ``+``: order
numbers, epoch milliseconds and numeric ids must not be flagged (README: Faults and hostile input).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from parcours.schemas.errors import ValidationError
from prometheus_client import Counter

REDACTED = Counter(
    "parcours_pii_redacted",
    "Values that looked like an e-mail address or a phone number, replaced by their sha256",
    ["field"],
)
REJECTED = Counter(
    "parcours_pii_rejected",
    "Events refused because a field looked like an e-mail address or a phone number",
    ["field"],
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    # The look-behind lets a match start only where a local part can begin, which keeps the scan
    # linear on long runs of letters.
    rf"(?<![\w.%+\-])[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]{{0,63}}(?:@|%40)(?:{_LABEL}\.)+[A-Za-z]{{2,24}}(?![\w\-])"
)
_PHONE = re.compile(
    r"""
    (?<![\w+.\-/:])
    (?:
        (?P<intl>\+[1-9]\d*(?:(?:[ .\-]|[ .\-]?\(\d+\)[ .\-]?)\d+)*)   # +33 6 12 34 56 78, +1 (415) 555-0100
      | (?P<idd>00[1-9]\d*(?:[ .\-]\d+){2,})                           # 0033 6 12 34 56 78
      | (?P<trunk>0[1-9]\d*(?:[ .\-]\d{2,}){2,})                       # 06 12 34 56 78, 020 7946 0958
      | (?P<nanp>\([2-9]\d\d\)\ ?\d{3}[ .\-]\d{4}|[2-9]\d\d(?P<sep>[ .\-])\d{3}(?P=sep)\d{4})  # (415) 555-0100
    )
    (?![\w\-/:]|[.,]\d)
    """,
    re.VERBOSE,
)
# Where a number can be: a run of digits and separators. Searching only there keeps the scan
# fast (a pattern that starts with a character set is skipped along quickly, a look-behind is not).
_NUMBER_RUN = re.compile(r"[+(\d][\d .\-()+]{8,}")
_DIGITS = re.compile(r"\d")
_SEPARATORS = re.compile(r"[ .\-]")


@dataclass(frozen=True)
class Found:
    kind: str
    """``email`` or ``phone``."""
    start: int
    end: int
    digest: str
    """sha256 of the normalised value, as the matching identity would carry it."""


def hash_email(address: str) -> str:
    """sha256 of the normalised address (trimmed, lower-case)."""
    normalised = address.strip().lower()
    if "@" not in normalised:
        raise ValidationError("not an e-mail address", field="email")
    return hashlib.sha256(normalised.encode()).hexdigest()


def hash_phone(number: str, default_country_code: str | None = None) -> str:
    """sha256 of the number in E.164 form (``+`` and digits only)."""
    compact = re.sub(r"[\s\-().]", "", number.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not compact.startswith("+"):
        if default_country_code is None:
            raise ValidationError("phone number needs a +country code", field="phone")
        compact = f"+{default_country_code.lstrip('+')}{compact.lstrip('0')}"
    if not re.fullmatch(r"\+[0-9]{6,15}", compact):
        raise ValidationError("not a phone number", field="phone")
    return hashlib.sha256(compact.encode()).hexdigest()


def _phone_digest(match: re.Match[str]) -> str | None:
    """The digest of a plausible phone number, None for a look-alike (an amount, a date)."""
    text = match.group(0)
    digits = len(_DIGITS.findall(text))
    if match.group("intl") is not None:
        # "+12500000.50" is a signed amount: a number written with dots has at least two.
        if not 8 <= digits <= 15 or text.count(".") == 1:
            return None
        return hash_phone(text)
    if match.group("idd") is not None:
        return hash_phone(text) if 10 <= digits <= 17 else None
    # One separator style throughout: "01.02.2026 10" is a date and an hour.
    if match.group("trunk") is not None and (
        not 9 <= digits <= 12 or len(set(_SEPARATORS.findall(text))) != 1
    ):
        return None
    # No country code is known: the national number's digits are what gets hashed.
    return hashlib.sha256(re.sub(r"\D", "", text).encode()).hexdigest()


def find(text: str) -> list[Found]:
    """Every e-mail address and phone number in ``text``, in order."""
    found: list[Found] = []
    if "@" in text or "%40" in text:
        for m in _EMAIL.finditer(text):
            digest = hash_email(m.group(0).replace("%40", "@"))
            found.append(Found("email", m.start(), m.end(), digest))
    for run in _NUMBER_RUN.finditer(text):
        # The look-behind sees before the run; one character after it is enough look-ahead.
        for m in _PHONE.finditer(text, run.start(), run.end() + 1):
            if any(f.start <= m.start() < f.end for f in found):
                continue  # digits inside an address already found
            phone = _phone_digest(m)
            if phone is not None:
                found.append(Found("phone", m.start(), m.end(), phone))
    return sorted(found, key=lambda f: f.start)


def redact(text: str, found: list[Found] | None = None) -> str:
    """``text`` with each address and number replaced by its digest."""
    found = find(text) if found is None else found
    parts, position = [], 0
    for f in found:
        parts += [text[position : f.start], f.digest]
        position = f.end
    return "".join([*parts, text[position:]])


def scrub(payload: bytes) -> bytes:
    """Raw bytes (a rejected line) with the personal data redacted: dead letters keep what was
    wrong with an input, never the address in it. Bytes that are not UTF-8 pass as Latin-1."""
    try:
        return redact(payload.decode()).encode()
    except UnicodeDecodeError:
        return redact(payload.decode("latin-1")).encode("latin-1")
