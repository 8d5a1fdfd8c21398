from datetime import UTC, datetime, timedelta, timezone

from parcours.sinks.rows import ts


def test_a_timestamp_is_a_millisecond_literal_in_utc_whatever_its_zone() -> None:
    at = datetime(2026, 12, 4, 12, 3, 4, 567_891, tzinfo=UTC)
    assert ts(at) == "2026-12-04 12:03:04.567"
    assert ts(at.astimezone(timezone(timedelta(hours=-5)))) == "2026-12-04 12:03:04.567"
    assert ts(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01 00:00:00.000"


def test_epoch_milliseconds_and_none() -> None:
    assert ts(1_764_849_784_567) == "2025-12-04 12:03:04.567"
    assert ts(None) is None
