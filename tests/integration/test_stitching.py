"""Identity resolution and journey stitching through the real pipeline: the rows analysts see."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from parcours.deploy.replay import replay
from parcours.deploy.stack import Stack, embedded_stack
from parcours.sinks.backend import Backend
from parcours.sinks.client import open_reader
from parcours.streams.identity import profile_id

from tests.factories import touchpoint
from tests.integration.conftest import (
    deleted_from_table,
    isolated_settings,
    query,
    table_values,
)

pytestmark = pytest.mark.integration


def _replay(stack: Stack, reader: Backend, tmp_path: Path, events: list[dict[str, Any]]) -> None:
    path = tmp_path / "scenario.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = replay(stack.settings, path, reader=reader, timeout=120)
    assert (result.accepted, result.rejected) == (len(events), 0)


def _placed(reader: Backend, tag: str) -> dict[str, dict[str, Any]]:
    rows = query(
        reader,
        "SELECT event_id, profile_id, journey_id FROM {db}.touchpoints "
        f"WHERE event_id LIKE '{tag}-%' ORDER BY event_id",
    )
    return {row.pop("event_id"): row for row in rows}


def _journeys(reader: Backend, profile: str) -> list[dict[str, Any]]:
    return query(
        reader,
        "SELECT journey_id, status, channels, touchpoints, pivots FROM {db}.journeys "
        f"WHERE profile_id = '{profile}' ORDER BY started_at",
    )


def _shrunk(value: bytes | None) -> bool:
    return value not in (None, b"null") and json.loads(value or b"")["events"] == []


def _event(tag: str, n: int, minute: int, **changes: Any) -> dict[str, Any]:
    """The test's n-th touchpoint, ``minute`` minutes into the scenario."""
    return touchpoint(
        event_id=f"{tag}-{n}", occurred_at=f"2026-11-24T09:{minute:02d}:00+00:00", **changes
    )


def test_anonymous_web_then_login_then_store_purchase_is_one_profile_and_one_journey(
    stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    cookie, crm, card = f"ck-{tag}", f"crm-{tag}", f"loy-{tag}"
    order = {"order_id": f"o-{tag}", "value": 59.0, "currency": "EUR"}
    _replay(
        stack,
        reader,
        tmp_path,
        [
            _event(tag, 1, 0, identities={"anonymous_id": cookie}),
            _event(
                tag,
                2,
                2,
                action="product_view",
                identities={"anonymous_id": cookie},
            ),
            _event(
                tag,
                3,
                5,
                action="identify",
                identities={"anonymous_id": cookie, "crm_id": crm},
            ),
            _event(
                tag,
                4,
                50,
                channel="store",
                action="purchase",
                identities={"loyalty_id": card, "crm_id": crm},
                order=order,
            ),
        ],
    )
    customer = profile_id(f"crm_id:{crm}")
    placed = _placed(reader, tag)
    assert {row["profile_id"] for row in placed.values()} == {customer}
    assert len({row["journey_id"] for row in placed.values()}) == 1
    journey = placed[f"{tag}-1"]["journey_id"]
    sessions = query(
        reader,
        f"SELECT session_key FROM {{db}}.touchpoints WHERE event_id LIKE '{tag}-%' ORDER BY event_id",
    )
    # 45 minutes of silence before the store: a second session in the same journey.
    assert [r["session_key"] for r in sessions] == [f"{journey}/1"] * 3 + [f"{journey}/2"]
    assert _journeys(reader, customer) == [
        {
            "journey_id": placed[f"{tag}-1"]["journey_id"],
            "status": "converted",
            "channels": ["web", "store"],
            "touchpoints": 4,
            "pivots": 1,
        }
    ]
    # The anonymous profile, merged away, keeps only where it went (README: crash safety).
    loser = json.dumps(profile_id(f"anonymous_id:{cookie}")).encode()
    latest = table_values(stack.settings, "profiles", {loser}, _shrunk)
    assert json.loads(latest[loser] or b"")["merged_into"] == customer


def test_a_shared_kiosk_keeps_two_crm_ids_apart_and_warns(
    stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    kiosk, alice, bob = f"kiosk-{tag}", f"crm-a-{tag}", f"crm-b-{tag}"
    _replay(
        stack,
        reader,
        tmp_path,
        [
            _event(
                tag,
                1,
                0,
                channel="kiosk",
                action="identify",
                identities={"device_id": kiosk, "crm_id": alice},
            ),
            _event(
                tag,
                2,
                9,
                channel="kiosk",
                action="identify",
                identities={"device_id": kiosk, "crm_id": bob},
            ),
        ],
    )
    placed = _placed(reader, tag)
    assert placed[f"{tag}-1"]["profile_id"] == profile_id(f"crm_id:{alice}")
    assert placed[f"{tag}-2"]["profile_id"] == profile_id(f"crm_id:{bob}")
    warnings = query(
        reader,
        "SELECT identity, crm_id, event_id FROM {db}.identity_warnings FINAL "
        f"WHERE identity = 'device_id:{kiosk}' ORDER BY crm_id",
    )
    assert warnings == [
        {"identity": f"device_id:{kiosk}", "crm_id": f"crm_id:{alice}", "event_id": f"{tag}-1"},
        {"identity": f"device_id:{kiosk}", "crm_id": f"crm_id:{bob}", "event_id": f"{tag}-2"},
    ]


def test_a_placeholder_id_links_nothing(stack: Stack, reader: Backend, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    _replay(
        stack,
        reader,
        tmp_path,
        [
            _event(
                tag,
                n,
                n,
                channel="mobile_app",
                identities={"anonymous_id": "undefined", "crm_id": f"crm-{n}-{tag}"},
            )
            for n in range(3)
        ],
    )
    placed = _placed(reader, tag)
    assert [row["profile_id"] for row in placed.values()] == [
        profile_id(f"crm_id:crm-{n}-{tag}") for n in range(3)
    ]
    merged = query(
        reader,
        "SELECT count() AS n FROM {db}.profile_merges "
        f"WHERE survivor IN ({', '.join(repr(r['profile_id']) for r in placed.values())})",
    )
    assert merged == [{"n": 0}]


def test_two_known_profiles_merged_by_a_later_event_show_one_history(
    stack: Stack, reader: Backend, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    card, email = f"loy-{tag}", uuid.uuid4().hex + uuid.uuid4().hex
    _replay(
        stack,
        reader,
        tmp_path,
        [
            _event(
                tag,
                1,
                0,
                channel="store",
                action="store_visit",
                identities={"loyalty_id": card},
            ),
            _event(
                tag,
                2,
                3,
                channel="email",
                action="message_clicked",
                identities={"email_sha256": email},
            ),
        ],
    )
    before = _placed(reader, tag)
    assert before[f"{tag}-2"]["profile_id"] == profile_id(f"email_sha256:{email}")
    _replay(
        stack,
        reader,
        tmp_path,
        [
            _event(
                tag,
                3,
                20,
                channel="store",
                action="identify",
                identities={"loyalty_id": card, "email_sha256": email},
            )
        ],
    )
    survivor, loser = profile_id(f"loyalty_id:{card}"), profile_id(f"email_sha256:{email}")
    placed = _placed(reader, tag)
    assert {row["profile_id"] for row in placed.values()} == {survivor}
    assert len({row["journey_id"] for row in placed.values()}) == 1
    assert [(j["channels"], j["touchpoints"]) for j in _journeys(reader, survivor)] == [
        (["store", "email"], 3)
    ]
    assert _journeys(reader, loser) == []
    merges = query(
        reader, f"SELECT survivor FROM {{db}}.profile_merges FINAL WHERE loser = '{loser}'"
    )
    assert merges == [{"survivor": survivor}]


def test_a_customer_back_two_months_later_keeps_every_row_while_the_worker_forgets(
    tmp_path: Path,
) -> None:
    """The worker prunes a journey once time is past the retention after it (README: Bounded
    state); the analysts' tables keep it whole, closed, and the new visit starts a journey. On
    a stack of its own: the shared one's clock is already past these dates (they would be
    late, and late touchpoints hold pruning back)."""
    tag = uuid.uuid4().hex[:8]
    crm = {"crm_id": f"crm-{tag}"}
    days = ("2026-09-20T10:00", "2026-09-20T10:05", "2026-11-20T10:00", "2026-11-20T10:03")
    channels = ("web", "mobile_app", "web", "store")
    events = [
        touchpoint(
            event_id=f"{tag}-{n}", occurred_at=f"{at}:00+00:00", channel=channel, identities=crm
        )
        for n, (at, channel) in enumerate(zip(days, channels, strict=True), 1)
    ]
    settings = isolated_settings(tmp_path, "prune", partitions=2, workers=1)
    with embedded_stack(settings) as stack:
        reader = open_reader(stack.settings)
        _replay(stack, reader, tmp_path, events)
        profile = profile_id(f"crm_id:crm-{tag}")
        placed = _placed(reader, tag)
        assert sorted(placed) == [f"{tag}-{n}" for n in range(1, 5)]
        assert {row["profile_id"] for row in placed.values()} == {profile}
        journeys = _journeys(reader, profile)
        assert [(j["status"], j["channels"], j["touchpoints"]) for j in journeys] == [
            ("expired", ["web", "mobile_app"], 2),
            ("open", ["web", "store"], 2),
        ]
        old = {f'"record:{tag}-{n}"'.encode() for n in (1, 2)}
        new = {f'"record:{tag}-{n}"'.encode() for n in (3, 4)}
        assert not deleted_from_table(stack.settings, "profiles", old) & new
